#!/usr/bin/env bash
# `make test`: set up what the suite needs (runsc, rootfs, Redis, venv) and run all of it.
# With CI=true it runs against PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

# A Redis database of its own, so a running `make run` worker never takes the tests' tasks.
export CRUCIBLE_REDIS_URL="${CRUCIBLE_TEST_REDIS_URL:-redis://127.0.0.1:6379/14}"
if [[ "${CI:-}" == "true" ]]; then
  export CRUCIBLE_DATABASE_URL="${CRUCIBLE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/crucible}"
fi

ensure_system --with-chromium --with-docker --with-postgres  # tests start their own dockerd and clusters
ensure_venv requirements-test.txt
ensure_image
ensure_redis "$CRUCIBLE_REDIS_URL"
trap stop_started_redis EXIT

say "web tests (database: ${CRUCIBLE_DATABASE_URL:-embedded SQLite})"
if [[ $# -gt 0 ]]; then
  exec "$VENV/bin/pytest" "$@"
fi
# The web's tests run in two processes at once (pytest-xdist; each has its own database, Redis
# database and var dir: crucible_site/test_settings.py); the sandbox, end-to-end and fault tests
# measure time and kill processes, so they run one at a time. Sync Playwright and pytest-asyncio
# clash in one process: the browser tests run on their own.
status=0
"$VENV/bin/pytest" tests/evaluations -n 2 --durations=10 || status=$?
say "sandbox, end-to-end, fault and client tests"
"$VENV/bin/pytest" --ignore=tests/evaluations --ignore=tests/browser --durations=15 || status=$?
say "browser tests (Chromium)"
"$VENV/bin/pytest" tests/browser -p no:asyncio --durations=5 || status=$?
exit $status
