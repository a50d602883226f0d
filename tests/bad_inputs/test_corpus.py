"""The corpus script: its command line writes every file, and the same bytes on every run."""

from __future__ import annotations

import subprocess
import sys

from tests.bad_inputs.conftest import CLI_TIMEOUT_S, REPO_ROOT, corpus_module


def test_script_writes_same_corpus(corpus, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "make_bad_corpus.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )

    assert result.returncode == 0, result.stderr
    assert f"Wrote {len(corpus)} files" in result.stdout
    for name, path in corpus.items():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), name


def test_corpus_stays_small(corpus):
    total = sum(path.stat().st_size for path in corpus.values())

    assert total < 1024 * 1024
    assert corpus["empty_video"].stat().st_size == 0
    assert corpus["zip_bomb"].stat().st_size < corpus_module.ZIP_BOMB_MEMBER_BYTES // 100
