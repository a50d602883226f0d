#!/usr/bin/env bash
# Run the whole suite: lint, the Python tests (web, analysis, browser), and the frontend tests.
#
# The Python suite runs against DATABASE_URL and REDIS_URL when they are set (CI points them
# at PostgreSQL and Redis) and then once more on the default path, SQLite and the embedded
# Redis, for the tests that cover storage, jobs and websockets. With neither set, it runs
# once on the default path.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
status=0

run() {
  echo "==> $*"
  "$@" || status=1
}

run .venv/bin/ruff check .
run .venv/bin/pytest "$@"
if [ -n "${DATABASE_URL:-}" ] || [ -n "${REDIS_URL:-}" ]; then
  echo "==> default path: SQLite and the embedded Redis"
  run env -u DATABASE_URL -u REDIS_URL .venv/bin/pytest -m "not e2e" tests/web/test_jobs.py tests/web/test_uploads.py tests/web/test_defaults.py
fi
run bash -c "cd frontend && npm test --silent"
exit $status
