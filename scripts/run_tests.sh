#!/usr/bin/env bash
# Run the whole suite: lint, the frontend tests, the Python tests (web, analysis, browser) and,
# when no test paths are given, the headless demo check.
#
# The Python suite runs against DATABASE_URL and REDIS_URL when they are set (CI points them
# at PostgreSQL and Redis) and then once more on the default path, SQLite and the embedded
# Redis. With neither set, it runs
# once on the default path.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
status=0
test_paths=$#

run() {
  echo "==> $*"
  "$@" || status=1
}

run .venv/bin/ruff check .
run bash -c "cd frontend && npm test --silent"
run .venv/bin/pytest "$@"
if [ -n "${DATABASE_URL:-}" ] || [ -n "${REDIS_URL:-}" ]; then
  echo "==> default path: SQLite and the embedded Redis"
  # The analysis tests use neither service, so the second run leaves them out. The browser
  # tests are left out too, to keep the suite short. tests/web covers the embedded Redis's
  # websockets and queue, and the demo check below runs real jobs on the default path.
  if [ $# -eq 0 ]; then set -- tests/web tests/comparisons; fi
  run env -u DATABASE_URL -u REDIS_URL .venv/bin/pytest "$@"
fi
if [ "$test_paths" -eq 0 ]; then
  # The demo check makes its own SQLite database and embedded Redis in a temporary directory.
  run env OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" $PY manage.py demo --check
fi
exit $status
