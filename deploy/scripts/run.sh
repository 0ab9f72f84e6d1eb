#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs the whole platform locally: the three servers (servers.sh) and the six services, built in
# release mode, each service a background process logging to <state>/logs/<service>.log.
#
# Usage: run.sh [run|up|down|restart SERVICE]
#   run (default)  start everything, print the gateway URL and a development token, stay in the
#                  foreground until Ctrl-C / SIGTERM (or a service dies), then stop everything
#   up             start everything and return once every service is ready (bench.sh uses this)
#   down           stop the services and the servers (`make stop`); safe when nothing runs
#   restart NAME   SIGTERM one running service, start it again and wait until it is ready (the
#                  reconnect benchmark restarts the gateway this way)
# Environment:
#   SB_STATE_DIR (default <repo>/.state/stack), SB_KAFKA_PORT, SB_REDIS_PORT, SB_POSTGRES_PORT
#   SB_<SERVICE>_PORT   HTTP port per service: SB_GATEWAY_PORT (8080), SB_ORCHESTRATOR_PORT (8081),
#                       SB_AGENT_WORKER_PORT (8082), SB_VOICE_WORKER_PORT (8083),
#                       SB_WORKFLOW_RUNNER_PORT (8084), SB_NOTIFIER_PORT (8085)
#   SB_<SERVICE>_ADMIN_PORT  admin port per service (/readyz, /metrics): default its HTTP port + 1000
#   SB_HTTP_HOST        address the services listen on (default 127.0.0.1)
#   SWITCHBOARD_JWT_SECRET  default: a random secret made once, kept in <state>/jwt-secret (so the
#                       services need no development mode: they refuse the built-in secret)
#   SB_BIN_DIR          use these binaries and skip `swift build -c release`
#   SB_REDIS_CLUSTER_PORT  run the services on a local Redis Cluster (redis-cluster.sh: 3 primaries
#                       and 3 replicas on this port and the five after it) instead of the one Redis
#   SB_READY_TIMEOUT (120), SB_STOP_TIMEOUT (30) seconds
# Other SWITCHBOARD_* variables (e.g. SWITCHBOARD_LOG_LEVEL) pass through to the services.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=run
# shellcheck source=lib.sh
source "$ROOT/deploy/scripts/lib.sh"
cd "$ROOT"

SERVERS=$ROOT/deploy/scripts/servers.sh
CLUSTER=$ROOT/deploy/scripts/redis-cluster.sh
mkdir -p "${SB_STATE_DIR:-$ROOT/.state/stack}"
SB_STATE_DIR=$(cd "${SB_STATE_DIR:-$ROOT/.state/stack}" && pwd)
export SB_STATE_DIR
export SB_KAFKA_PORT=${SB_KAFKA_PORT:-9092}
export SB_REDIS_PORT=${SB_REDIS_PORT:-6390}
export SB_POSTGRES_PORT=${SB_POSTGRES_PORT:-5440}
if [ -n "${SB_REDIS_CLUSTER_PORT:-}" ]; then
  REDIS_URL=redis+cluster://$(for ((i = 0; i < 6; i++)); do printf '127.0.0.1:%s,' $((SB_REDIS_CLUSTER_PORT + i)); done)
  REDIS_URL=${REDIS_URL%,}
else
  REDIS_URL=redis://127.0.0.1:$SB_REDIS_PORT
fi
READY_TIMEOUT=${SB_READY_TIMEOUT:-120}
STOP_TIMEOUT=${SB_STOP_TIMEOUT:-30}
LOGS=$SB_STATE_DIR/logs
PIDS=$SB_STATE_DIR/pids

SERVICES=(gateway orchestrator agent-worker voice-worker workflow-runner notifier)
STOP=""       # set by the foreground mode's signal trap
DOWN_DONE=""  # down() runs once per invocation

# HTTP port of a service: SB_<NAME>_PORT, else its default.
service_port() {
  local name=$1 var default
  case "$name" in
    gateway) default=8080 ;;
    orchestrator) default=8081 ;;
    agent-worker) default=8082 ;;
    voice-worker) default=8083 ;;
    workflow-runner) default=8084 ;;
    notifier) default=8085 ;;
    *) die "unknown service $name" ;;
  esac
  var=SB_$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')_PORT
  echo "${!var:-$default}"
}

# Admin port of a service (/readyz, /metrics): SB_<NAME>_ADMIN_PORT, else its HTTP port + 1000.
service_admin_port() {
  local var
  var=SB_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')_ADMIN_PORT
  echo "${!var:-$(($(service_port "$1") + 1000))}"
}

service_pid() { live_pid "$PIDS/$1.pid" "$1"; }

# The JWT secret: the environment's, else one made once for this state folder.
jwt_secret() {
  local file=$SB_STATE_DIR/jwt-secret
  if [ -n "${SWITCHBOARD_JWT_SECRET:-}" ]; then
    printf '%s' "$SWITCHBOARD_JWT_SECRET"
    return
  fi
  if [ ! -s "$file" ]; then
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$file")
  fi
  cat "$file"
}

# The release binaries' folder, building them unless SB_BIN_DIR names one.
bin_dir() {
  if [ -n "${SB_BIN_DIR:-}" ]; then
    (cd "$SB_BIN_DIR" && pwd)
    return
  fi
  log "building release binaries (swift build -c release)"
  swift build -c release >&2
  swift build -c release --show-bin-path
}

tail_log() {
  local name=$1
  echo "----- last lines of $LOGS/$name.log -----" >&2
  tail -n 40 "$LOGS/$name.log" >&2 2>/dev/null || true
  echo "-----" >&2
}

# SIGTERM to every running service, then up to STOP_TIMEOUT seconds for all to exit; the rest
# get SIGKILL. Then the servers.
down() {
  local name pid running=() i
  [ -z "$DOWN_DONE" ] || return 0
  DOWN_DONE=1
  for name in "${SERVICES[@]}"; do
    if pid=$(service_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      running+=("$name:$pid")
    fi
  done
  if [ ${#running[@]} -gt 0 ]; then
    log "stopping ${#running[@]} service(s); waiting up to ${STOP_TIMEOUT}s"
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      local left=()
      for name in "${running[@]}"; do pid_alive "${name#*:}" && left+=("$name"); done
      running=("${left[@]+"${left[@]}"}")
      [ ${#running[@]} -eq 0 ] && break
      sleep 0.1
    done
    for name in "${running[@]+"${running[@]}"}"; do
      warn "${name%%:*} did not stop within ${STOP_TIMEOUT}s; killing it"
      kill -KILL "${name#*:}" 2>/dev/null || true
    done
  fi
  rm -f "$PIDS"/*.pid
  bash "$SERVERS" stop
  [ -z "${SB_REDIS_CLUSTER_PORT:-}" ] || bash "$CLUSTER" stop "$SB_REDIS_CLUSTER_PORT"
}

# Returns once every service's /readyz answers 200; on a timeout or a dead service, says which
# one, shows its log and returns non-zero.
wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) pending=("${@:-${SERVICES[@]}}") name code
  log "waiting up to ${READY_TIMEOUT}s for every service's /readyz"
  while :; do
    local still=()
    [ -z "$STOP" ] || return 1
    for name in "${pending[@]}"; do
      if ! service_pid "$name" >/dev/null; then
        warn "$name exited while starting"
        tail_log "$name"
        return 1
      fi
      code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$(service_admin_port "$name")/readyz" || true)
      [ "$code" = 200 ] || still+=("$name")
    done
    [ ${#still[@]} -eq 0 ] && return 0
    if ((SECONDS >= deadline)); then
      for name in "${still[@]}"; do
        warn "$name is not ready: http://127.0.0.1:$(service_admin_port "$name")/readyz did not answer 200"
        tail_log "$name"
      done
      return 1
    fi
    pending=("${still[@]}")
    sleep 1
  done
}

# Starts one service in the background with the stack's settings.
start_service() {
  local name=$1 bin=$2 secret=$3 port admin_port
  port=$(service_port "$name")
  admin_port=$(service_admin_port "$name")
  # Keep the previous run's log one generation back: it is often the interesting one.
  [ -f "$LOGS/$name.log" ] && mv -f "$LOGS/$name.log" "$LOGS/$name.log.1"
  log "starting $name on http://127.0.0.1:$port"
  # setsid: a terminal's Ctrl-C reaches only this script, whose trap stops the services in order.
  SWITCHBOARD_KAFKA_BROKERS=127.0.0.1:$SB_KAFKA_PORT \
  SWITCHBOARD_REDIS_URL=$REDIS_URL \
  SWITCHBOARD_POSTGRES_URL=postgres://switchboard:switchboard@127.0.0.1:$SB_POSTGRES_PORT/switchboard \
  SWITCHBOARD_JWT_SECRET=$secret \
  SWITCHBOARD_HTTP_HOST=${SB_HTTP_HOST:-127.0.0.1} \
  SWITCHBOARD_HTTP_PORT=$port \
  SWITCHBOARD_ADMIN_PORT=$admin_port \
    setsid "$bin/$name" </dev/null >"$LOGS/$name.log" 2>&1 &
  local pid=$! i
  echo "$pid" >"$PIDS/$name.pid"
  # Until the child has exec'd, /proc names the shell: wait, so a check right after sees the service.
  for ((i = 0; i < 100; i++)); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${name:0:15}" ] && break
    pid_alive "$pid" || break
    sleep 0.02
  done
}

# Restarts one service of a running stack: SIGTERM, up to STOP_TIMEOUT seconds to exit (then
# SIGKILL), start again with the same binaries, wait until ready.
restart() {
  local name=${1:?usage: $0 restart SERVICE} pid i
  pid=$(service_pid "$name") || die "$name is not running"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    warn "$name did not stop within ${STOP_TIMEOUT}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  start_service "$name" "$(cat "$SB_STATE_DIR/bin-dir")" "$(jwt_secret)"
  wait_ready "$name" || die "$name did not come back; its log is $LOGS/$name.log"
}

up() {
  local name pid port bin secret busy=()
  for name in "${SERVICES[@]}"; do
    if pid=$(service_pid "$name"); then
      die "$name is already running (pid $pid) from an earlier run: \`make stop\` (or $0 down) first"
    fi
  done
  bin=$(bin_dir)
  for name in "${SERVICES[@]}" switchboard; do
    [ -x "$bin/$name" ] || die "$bin/$name is missing: did the release build succeed?"
  done
  # Refuse before starting anything when a service's port is taken.
  for name in "${SERVICES[@]}"; do
    for port in "$(service_port "$name")" "$(service_admin_port "$name")"; do
      if port_busy "$port"; then busy+=("$name's port $port is taken by $(port_owner "$port")"); fi
    done
  done
  if [ ${#busy[@]} -gt 0 ]; then
    for name in "${busy[@]}"; do warn "$name"; done
    die "stop what is in the way, or choose other ports with SB_<SERVICE>_PORT / SB_<SERVICE>_ADMIN_PORT"
  fi

  bash "$SERVERS" start
  [ -z "${SB_REDIS_CLUSTER_PORT:-}" ] || bash "$CLUSTER" start "$SB_REDIS_CLUSTER_PORT"
  secret=$(jwt_secret)
  mkdir -p "$LOGS" "$PIDS"
  echo "$bin" >"$SB_STATE_DIR/bin-dir"
  for name in "${SERVICES[@]}"; do start_service "$name" "$bin" "$secret"; done
  if ! wait_ready; then
    down
    [ -z "$STOP" ] || exit 130
    die "the stack did not come up; logs are in $LOGS"
  fi
  log "all six services are ready"
}

# Prints where to connect and a development token.
banner() {
  local bin token gateway console
  bin=$(cat "$SB_STATE_DIR/bin-dir")
  gateway="ws://127.0.0.1:$(service_port gateway)/ws"
  token=$("$bin/switchboard" token --user demo --secret "$(jwt_secret)") \
    || { warn "could not mint a token with $bin/switchboard token"; token="(none)"; }
  # The web console signs in with the token in the link, then drops it from the address bar.
  console="http://127.0.0.1:$(service_port gateway)/?token=$token"
  cat <<EOF

  Switchboard is running.
    gateway    $gateway
    token      $token      (user demo)
    console    $console
    logs       $LOGS/<service>.log
  Ctrl-C stops everything.

EOF
}

# Foreground: up, then watch until a signal or a service's death, then down.
run() {
  local name pid code status=0
  trap 'STOP=signal' INT TERM
  # Whichever way this script ends (a failed start included), what it started is stopped.
  trap 'trap "" INT TERM; down' EXIT
  up
  [ -z "$STOP" ] || exit 130
  banner
  while [ -z "$STOP" ]; do
    # A background sleep, so that a signal interrupts `wait` at once.
    sleep 1 &
    wait $! 2>/dev/null || true
    [ -z "$STOP" ] || break
    for name in "${SERVICES[@]}"; do
      if ! service_pid "$name" >/dev/null; then
        pid=$(cat "$PIDS/$name.pid" 2>/dev/null || echo 0)
        code=0
        wait "$pid" 2>/dev/null || code=$?
        warn "$name exited unexpectedly (status $code); stopping everything"
        tail_log "$name"
        STOP="$name died"
        status=1
        break
      fi
    done
  done
  log "shutting down ($STOP)"
  exit "$status"
}

case "${1:-run}" in
  run) run ;;
  up) up ;;
  down) down ;;
  restart) restart "${2:-}" ;;
  *) echo "usage: $0 [run|up|down|restart SERVICE]" >&2; exit 2 ;;
esac
