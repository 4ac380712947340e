#!/usr/bin/env bash
# `make run`: set up everything, then run web (daphne: HTTP + websockets) and a Celery worker.
set -euo pipefail
umask 077  # what the processes write (database, work dirs, run output) is readable by their owner only
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

export CRUCIBLE_HOST="${CRUCIBLE_HOST:-127.0.0.1}"
export CRUCIBLE_PORT="${CRUCIBLE_PORT:-8000}"
export CRUCIBLE_REDIS_URL="${CRUCIBLE_REDIS_URL:-redis://127.0.0.1:6379/0}"

ensure_system
ensure_venv requirements.txt
say "sandbox image"
ensure_image
say "database"
"$PY" manage.py migrate --noinput -v0
"$PY" manage.py crucible_demo --logins-file "$CRUCIBLE_VAR_DIR/demo-logins.txt"
ensure_redis "$CRUCIBLE_REDIS_URL"
trap stop_started_redis EXIT

cat <<MSG

  Crucible is starting at http://$CRUCIBLE_HOST:$CRUCIBLE_PORT/
$(sed 's/^/  /' "$CRUCIBLE_VAR_DIR/demo-logins.txt" 2>/dev/null || true)
  API: curl -H "Authorization: Token <token>" -H 'Content-Type: application/json' \\
         -d '{"code": "print(42)"}' http://$CRUCIBLE_HOST:$CRUCIBLE_PORT/api/v1/submissions/
  Ctrl-C stops everything (running runs get ${CRUCIBLE_STOP_GRACE_SECONDS:-30} s to finish).

MSG
# In the background, so a SIGTERM to this script (not only Ctrl-C) reaches the processes too.
"$PY" scripts/start_processes.py -d "$ROOT" -f "$ROOT/Procfile" start &
procs=$!
trap 'kill -TERM "$procs" 2>/dev/null || true' TERM INT
status=0
while kill -0 "$procs" 2>/dev/null; do
  wait "$procs" || status=$?
done
exit "$status"
