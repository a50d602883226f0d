"""HTTPS, cookie and header settings with DEBUG off, read from the environment in a fresh process."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# Runs in the child process: load the settings, send two requests, print what they did.
PROBE = """
import json, django
from django.conf import settings
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client(HTTP_HOST="lab.example.org")
plain = client.get("/accounts/login/")
secure = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({
    "SECURE_SSL_REDIRECT": settings.SECURE_SSL_REDIRECT,
    "SECURE_HSTS_SECONDS": settings.SECURE_HSTS_SECONDS,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": settings.CSRF_COOKIE_SECURE,
    "SESSION_COOKIE_HTTPONLY": settings.SESSION_COOKIE_HTTPONLY,
    "plain_status": plain.status_code,
    "plain_location": plain.get("Location", ""),
    "secure_status": secure.status_code,
    "hsts": secure.get("Strict-Transport-Security", ""),
    "csp": secure.get("Content-Security-Policy", ""),
    "csrf_cookie_secure": bool(secure.cookies["csrftoken"]["secure"]) if "csrftoken" in secure.cookies else None,
    "frame_options": secure.get("X-Frame-Options", ""),
    "nosniff": secure.get("X-Content-Type-Options", ""),
    "referrer": secure.get("Referrer-Policy", ""),
}))
"""


def run_settings(tmp_path, code: str, **env) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests' conftest and fails the deploy check.
        if key
        not in (
            "DEBUG",
            "BEHIND_TLS_PROXY",
            "SECURE_COOKIES",
            "ALLOWED_HOSTS",
            "ALLOW_PLAIN_HTTP",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        )
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="biovlm_web.settings",
        SECRET_KEY="a-long-random-secret-key-for-the-settings-test-0123456789abcdef",
        BIOVLM_VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PYTHONPATH=str(REPO_ROOT),
    )
    environment.update({"DEBUG": "0", **env})
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_https_settings_behind_proxy(tmp_path):
    result = run_settings(tmp_path, PROBE, ALLOWED_HOSTS="lab.example.org", BEHIND_TLS_PROXY="1")
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["SECURE_SSL_REDIRECT"] is True
    assert found["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert found["SESSION_COOKIE_SECURE"] is True
    assert found["CSRF_COOKIE_SECURE"] is True
    assert found["SESSION_COOKIE_HTTPONLY"] is True
    assert found["plain_status"] == 301
    assert found["plain_location"] == "https://lab.example.org/accounts/login/"
    assert found["secure_status"] == 200
    assert found["hsts"].startswith("max-age=31536000")
    assert found["csrf_cookie_secure"] is True
    assert "script-src 'self' 'nonce-" in found["csp"]
    assert "frame-ancestors 'none'" in found["csp"]
    assert found["frame_options"] == "DENY"
    assert found["nosniff"] == "nosniff"
    assert found["referrer"] == "same-origin"


def test_public_host_without_tls_rejected(tmp_path):
    result = run_settings(tmp_path, "import django; django.setup()", ALLOWED_HOSTS="lab.example.org")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "BEHIND_TLS_PROXY=1" in result.stderr
    assert "lab.example.org" in result.stderr


def test_plain_http_allowed_when_stated(tmp_path):
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECURE_SSL_REDIRECT)"
    result = run_settings(tmp_path, code, ALLOWED_HOSTS="lab.example.org", ALLOW_PLAIN_HTTP="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("debug", ["0", "1"])
def test_loopback_serves_plain_http(tmp_path, debug):
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE, settings.SECURE_HSTS_SECONDS)"
    )
    result = run_settings(tmp_path, code, DEBUG=debug)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False False 0"


# HSTS for subdomains and preloading bind every host under the lab's domain to HTTPS, which
# only the operator can decide (SECURE_HSTS_INCLUDE_SUBDOMAINS); they stay off by default.
DEPLOY_WARNINGS_LEFT_TO_OPERATOR = {"security.W005", "security.W021"}


def test_deploy_check_passes_behind_proxy(tmp_path):
    code = (
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'ERROR'])"
    )
    result = run_settings(tmp_path, code, ALLOWED_HOSTS="lab.example.org", BEHIND_TLS_PROXY="1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    found = set(re.findall(r"\((security\.[WE]\d+)\)", output))
    assert found <= DEPLOY_WARNINGS_LEFT_TO_OPERATOR, output[-2000:]
