"""The default path (SQLite in WAL mode, the embedded Redis) and the settings readers."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from biovlm_web import embedded_redis
from biovlm_web.env import env_bool, env_int, env_list, env_size, parse_size

REPO_ROOT = Path(__file__).resolve().parents[2]


def bare_env(var_dir, **extra):
    """The environment of a fresh machine: no DATABASE_URL, no REDIS_URL."""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env.update(BIOVLM_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="biovlm_web.settings", PYTHONPATH=str(REPO_ROOT))
    env.update(extra)
    return env


@pytest.fixture
def short_var_dir():
    # Unix socket paths are limited to 107 bytes, so stay close to /tmp.
    with tempfile.TemporaryDirectory(prefix="bv-", dir="/tmp") as directory:
        yield Path(directory)
        embedded_redis.shutdown(Path(directory))


def test_default_path_uses_sqlite_wal_and_embedded_redis(short_var_dir):
    script = (
        "import json, django; django.setup();"
        "from django.conf import settings; from django.db import connection; import django_rq;"
        "cursor = connection.cursor(); cursor.execute('PRAGMA journal_mode'); mode = cursor.fetchone()[0];"
        "cursor.execute('PRAGMA busy_timeout'); busy = cursor.fetchone()[0];"
        "print(json.dumps({'engine': connection.vendor, 'journal': mode, 'busy_ms': busy,"
        " 'redis': settings.REDIS_URL, 'embedded': settings.REDIS_EMBEDDED,"
        " 'ping': django_rq.get_connection('default').ping(),"
        " 'channels': settings.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]['address']}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], env=bare_env(short_var_dir, SECRET_KEY="x" * 50), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert output.returncode == 0, output.stderr
    facts = json.loads(output.stdout.strip().splitlines()[-1])
    assert facts["engine"] == "sqlite"
    assert facts["journal"] == "wal"
    assert facts["busy_ms"] >= 1000
    assert facts["embedded"] is True
    assert facts["ping"] is True
    assert facts["redis"] == f"unix://{short_var_dir}/redis/redis.sock"
    assert facts["channels"] == facts["redis"]


def test_missing_secret_key_fails_loudly(short_var_dir):
    output = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=bare_env(short_var_dir, DEBUG="0"),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert output.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in output.stderr


def test_bad_database_url_fails_loudly(short_var_dir):
    output = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=bare_env(short_var_dir, SECRET_KEY="x" * 50, DATABASE_URL="nosuchdb://x/y"),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert output.returncode != 0
    assert "DATABASE_URL" in output.stderr


def test_embedded_redis_starts_once(short_var_dir):
    first = embedded_redis.ensure_running(short_var_dir)
    second = embedded_redis.ensure_running(short_var_dir)
    assert first == second
    connection = redis.Redis.from_url(first)
    connection.set("probe", "1")
    assert connection.get("probe") == b"1"
    embedded_redis.shutdown(short_var_dir)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(first).ping()


def test_embedded_redis_rejects_long_socket_path(tmp_path):
    with pytest.raises(RuntimeError, match="longer than 107 bytes"):
        embedded_redis.ensure_running(tmp_path / ("x" * 120))


@pytest.mark.parametrize(("text", "expected"), [("4096", 4096), ("512M", 512 * 1024**2), ("2G", 2 * 1024**3), ("1 KiB", 1024)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("reader", "value", "message"),
    [
        (lambda: env_bool("BIOVLM_PROBE", False), "maybe", "is not a boolean"),
        (lambda: env_int("BIOVLM_PROBE", 1), "ten", "is not an integer"),
        (lambda: env_int("BIOVLM_PROBE", 1, minimum=5), "2", "must be at least 5"),
        (lambda: env_size("BIOVLM_PROBE", 1), "12 parsecs", "is not a size"),
    ],
)
def test_env_readers_fail_loudly(monkeypatch, reader, value, message):
    monkeypatch.setenv("BIOVLM_PROBE", value)
    with pytest.raises(ImproperlyConfigured, match=message) as raised:
        reader()
    assert "BIOVLM_PROBE" in str(raised.value)


def test_env_list(monkeypatch):
    monkeypatch.setenv("BIOVLM_PROBE", "a.example, b.example,,")
    assert env_list("BIOVLM_PROBE", []) == ["a.example", "b.example"]
