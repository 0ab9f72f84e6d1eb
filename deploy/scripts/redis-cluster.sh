#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Starts or stops a local Redis Cluster: 3 primaries and 3 replicas on loopback, ports PORTBASE to
# PORTBASE+5, everything they write under one state folder. For the cluster tests
# (IntegrationTests.RedisClusterTests) and for running the stack against a cluster by hand
# (SWITCHBOARD_REDIS_URL=redis+cluster://127.0.0.1:PORTBASE,127.0.0.1:PORTBASE+1,...).
#
# Usage: redis-cluster.sh start|stop|status [PORTBASE]
# Environment:
#   SB_STATE_DIR       state folder; the cluster lives in its redis-cluster/ (default <repo>/.state/stack)
#   SB_START_TIMEOUT   seconds to wait for the nodes and for cluster_state:ok (default 60)
# Sharded PUB/SUB (SPUBLISH/SSUBSCRIBE) needs redis-server 7.0 or newer.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COMMAND=${1:-}
PORTBASE=${2:-7001}
START_TIMEOUT=${SB_START_TIMEOUT:-60}
NODES=6

mkdir -p "${SB_STATE_DIR:-$ROOT/.state/stack}"
STATE=$(cd "${SB_STATE_DIR:-$ROOT/.state/stack}" && pwd)/redis-cluster
LOG_TAG=redis-cluster
# shellcheck source=lib.sh
source "$ROOT/deploy/scripts/lib.sh"

ports() { local i; for ((i = 0; i < NODES; i++)); do echo $((PORTBASE + i)); done; }
cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

wait_until() {
  local what=$1 i
  shift
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "$what within ${START_TIMEOUT}s; see $STATE/*.log"
}

check_version() {
  local version major
  command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed: run deploy/scripts/install-deps.sh"
  version=$(redis-server --version | sed -E 's/.* v=([0-9.]+).*/\1/')
  major=${version%%.*}
  [ "$major" -ge 7 ] || die "redis-server $version is too old for sharded PUB/SUB (SPUBLISH needs 7.0)"
}

cluster_ok() { cli "$PORTBASE" cluster info | grep -q '^cluster_state:ok'; }
# Every node must see every slot covered before clients are let in: a node still gossiping answers
# CLUSTERDOWN.
all_ok() {
  local port
  for port in $(ports); do cli "$port" cluster info | grep -q '^cluster_state:ok' || return 1; done
}

start() {
  local port addresses=() pid
  check_version
  for port in $(ports); do
    if ! live_pid "$STATE/$port.pid" redis-server >/dev/null && port_busy "$port"; then
      die "port $port is taken by $(port_owner "$port"); choose another PORTBASE"
    fi
  done
  mkdir -p "$STATE"
  for port in $(ports); do
    addresses+=("127.0.0.1:$port")
    if pid=$(live_pid "$STATE/$port.pid" redis-server); then
      log "node $port already running, pid $pid"
      continue
    fi
    mkdir -p "$STATE/$port"
    # No persistence: a test cluster starts empty every time; failovers are the replicas' job.
    cat >"$STATE/$port/redis.conf" <<CONF
port $port
bind 127.0.0.1
protected-mode yes
daemonize yes
pidfile $STATE/$port.pid
logfile $STATE/$port.log
dir $STATE/$port
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 2000
appendonly no
save ""
maxmemory-policy noeviction
CONF
    setsid redis-server "$STATE/$port/redis.conf" </dev/null >>"$STATE/$port.log" 2>&1 \
      || die "redis-server on $port did not start; see $STATE/$port.log"
  done
  for port in $(ports); do wait_until "node $port did not answer" cli "$port" ping; done
  if ! cluster_ok; then
    log "creating the cluster on ports $PORTBASE-$((PORTBASE + NODES - 1))"
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$STATE/create.log" 2>&1 \
      || { tail -n 20 "$STATE/create.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  wait_until "the cluster did not reach cluster_state:ok" all_ok
  log "cluster ready: redis+cluster://$(IFS=,; echo "${addresses[*]}")"
}

stop() {
  local port pid
  for port in $(ports); do
    pid=$(live_pid "$STATE/$port.pid" redis-server) || continue
    cli "$port" shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/$port.pid"
  done
  # The next start is a new cluster: node ids and slot assignments are not kept.
  rm -rf "$STATE"
}

status() {
  local port pid rc=0
  for port in $(ports); do
    if pid=$(live_pid "$STATE/$port.pid" redis-server); then
      echo "redis-cluster node $port running  pid $pid  $(cli "$port" role 2>/dev/null | head -n1)"
    else
      echo "redis-cluster node $port stopped"; rc=3
    fi
  done
  return $rc
}

case "$COMMAND" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: redis-cluster.sh start|stop|status [PORTBASE]" ;;
esac
