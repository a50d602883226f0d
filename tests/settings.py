"""Settings for the test suite: the project's settings with test-only environment defaults.

Values set here go into ``os.environ`` so that the worker and server subprocesses that
tests start read the same settings, the same var directory and the same Redis.
"""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("BIOVLM_VAR_DIR", tempfile.mkdtemp(prefix="biovlm-test-"))
os.environ.setdefault("JOB_HEARTBEAT_SECONDS", "0.5")
os.environ.setdefault("JOB_STALE_SECONDS", "4")
os.environ.setdefault("JOB_PROGRESS_MIN_INTERVAL", "0.05")
os.environ.setdefault("UPLOAD_MAX_FILE_SIZE", "64M")
os.environ.setdefault("UPLOAD_CHUNK_SIZE", "1M")
os.environ.setdefault("CHANNELS_PREFIX", "biovlm-test")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Many tests present unknown share tokens from 127.0.0.1; the rate-limit tests lower this.
os.environ.setdefault("SHARE_TOKEN_MAX_FAILURES", "100000")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

from biovlm_web.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
