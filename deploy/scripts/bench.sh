#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make bench`: builds in release mode, starts the servers and the six services as run.sh does
# (in their own state folder, wiped before every scenario so each starts alike), runs the named
# `switchboard bench` scenarios, then stops everything whatever happened. The offline engine
# streams instantly, so the platform is timed, not the engine's pacing.
#
# Usage: bench.sh [SCENARIO...]   (default: all: bus roundtrip fanout reconnect connections workflows overhead agents
#                                  history ingest voice-overhead voice-devices notifications notifier-codec)
#   bus         one Kafka hop                    roundtrip   message → first chunk / stream end
#   fanout      1000 clients, 100 conversations  reconnect   1000 clients through a gateway restart
#   connections 10 000 idle connections and one broadcast
#   workflows   100 concurrent runs of a 10-node DAG: node event latency, runs/s, runner memory
#   overhead    multi-agent runs: the engine's first token → the client's first chunk, per role
#   agents      200 concurrent parallel-pattern runs, offline engine at 30 tokens/s per role: chunks/s,
#               chunk latency, orchestrator and agent-worker RSS (restarts the agent-worker paced, then
#               back to instant)
#   history     1 000 000 messages in 10 000 sessions seeded into PostgreSQL: pages of 50, REST and store
#   ingest      the persistence consumer: user messages published → rows in PostgreSQL, messages/s
#               (the orchestrator and agent-worker are stopped first: the consumer is measured alone)
#   voice-overhead  one xiaozhi device speaking: voice-to-voice latency minus the VAD's silence window
#   voice-devices   200 devices streaming speech at once: uplink frames dropped, downlink pacing jitter,
#               gateway and voice-worker RSS per device
#   notifications   POST /api/v1/notifications at 3000/s for 10 s → Kafka → notifier → Redis PUBLISH:
#               accepted rate, POST → 202 and creation → PUBLISH latency, broker (Tansu), notifier and
#               gateway CPU-seconds per 1000 notifications
#   notifier-codec  the notifier's envelope → frame step in-process, µs of CPU per event (no stack needed)
#   (voice-worker runs the instant ASR/TTS engines here, so the pipeline is timed, not the engines)
# SB_BENCH_<SCENARIO>_ARGS (e.g. SB_BENCH_ROUNDTRIP_ARGS="--messages 5000", SB_BENCH_VOICE_DEVICES_ARGS="--devices 50") adds options.
# Ports as for run.sh (SB_GATEWAY_PORT, ...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=bench
# shellcheck source=lib.sh
source "$ROOT/deploy/scripts/lib.sh"
cd "$ROOT"

RUN=$ROOT/deploy/scripts/run.sh
export SB_STATE_DIR=${SB_STATE_DIR:-$ROOT/.state/bench}

# Each scenario gets a fresh stack: Tansu keeps its log in memory and slows down as it grows, so
# a scenario run after a heavy one would measure the broker's backlog, not Switchboard.
fresh_stack() {
  bash "$RUN" down >/dev/null 2>&1 || true
  rm -rf "$SB_STATE_DIR"
  bash "$RUN" up
}

trap 'bash "$RUN" down || warn "could not stop the bench stack (state $SB_STATE_DIR)"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Time the platform, not the offline engine's pacing.
export SWITCHBOARD_AGENT_TOKEN_RATE=${SWITCHBOARD_AGENT_TOKEN_RATE:-0}
export SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS=${SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS:-0}
export SWITCHBOARD_VOICE_ASR_ENGINE=${SWITCHBOARD_VOICE_ASR_ENGINE:-instant}
export SWITCHBOARD_VOICE_TTS_ENGINE=${SWITCHBOARD_VOICE_TTS_ENGINE:-instant}
fresh_stack

# The release build and the secret are made once, for all the stacks.
BIN=$(cat "$SB_STATE_DIR/bin-dir")
export SB_BIN_DIR=$BIN
SECRET=${SWITCHBOARD_JWT_SECRET:-$(cat "$SB_STATE_DIR/jwt-secret")}
export SWITCHBOARD_JWT_SECRET=$SECRET
BROKERS=127.0.0.1:${SB_KAFKA_PORT:-9092}
GATEWAY=ws://127.0.0.1:${SB_GATEWAY_PORT:-8080}/ws
POSTGRES=postgres://switchboard:switchboard@127.0.0.1:${SB_POSTGRES_PORT:-5440}/switchboard
GATEWAY_HTTP=http://127.0.0.1:${SB_GATEWAY_PORT:-8080}
VOICE_WORKER_HTTP=http://127.0.0.1:${SB_VOICE_WORKER_ADMIN_PORT:-$(( ${SB_VOICE_WORKER_PORT:-8083} + 1000 ))}
# 10 000 client sockets plus the gateway's side of them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || warn "could not raise the open-file limit; large scenarios may fail"

# Runs one scenario, remembering a failure but going on with the others.
status=0
scenario() {
  local name=$1 extra
  shift
  extra=SB_BENCH_$(printf '%s' "$name" | tr '[:lower:]-' '[:upper:]_')_ARGS
  log "switchboard bench $name $* ${!extra:-}"
  # shellcheck disable=SC2086  # the extra arguments are meant to split
  "$BIN/switchboard" bench "$name" "$@" ${!extra:-} || { warn "bench $name failed"; status=1; }
}

# SIGTERM to one service of the stack, waiting until it has exited.
stop_service() {
  local pid
  pid=$(cat "$SB_STATE_DIR/pids/$1.pid")
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(bus roundtrip fanout reconnect connections workflows overhead agents history ingest voice-overhead voice-devices notifications notifier-codec)
first=1
for name in "${scenarios[@]}"; do
  [ -n "$first" ] || fresh_stack
  first=""
  case "$name" in
    bus) scenario bus --brokers "$BROKERS" ;;
    roundtrip) scenario roundtrip --gateway "$GATEWAY" --secret "$SECRET" ;;
    fanout) scenario fanout --gateway "$GATEWAY" --brokers "$BROKERS" --secret "$SECRET" \
      --gateway-pid "$(cat "$SB_STATE_DIR/pids/gateway.pid")" ;;
    reconnect)
      scenario reconnect --gateways "$GATEWAY" --brokers "$BROKERS" --secret "$SECRET" \
        --restart-command "bash '$RUN' restart gateway" ;;
    connections)
      scenario connections --gateway "$GATEWAY" --gateway-pid "$(cat "$SB_STATE_DIR/pids/gateway.pid")" \
        --secret "$SECRET" ;;
    workflows)
      scenario workflows --gateway "$GATEWAY" --runner-pid "$(cat "$SB_STATE_DIR/pids/workflow-runner.pid")" \
        --secret "$SECRET" ;;
    overhead) scenario overhead --gateway "$GATEWAY" --secret "$SECRET" ;;
    agents)
      # Paced like a model, and enough tasks at once per partition for 4 × 200 concurrent roles.
      SWITCHBOARD_AGENT_TOKEN_RATE=${SB_BENCH_AGENTS_TOKEN_RATE:-30} SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS=150 \
        SWITCHBOARD_AGENT_CONCURRENCY=128 bash "$RUN" restart agent-worker
      scenario agents --gateway "$GATEWAY" --secret "$SECRET" \
        --orchestrator-pid "$(cat "$SB_STATE_DIR/pids/orchestrator.pid")" \
        --agent-worker-pid "$(cat "$SB_STATE_DIR/pids/agent-worker.pid")"
      bash "$RUN" restart agent-worker ;;
    history)
      scenario history --gateway "http://127.0.0.1:${SB_GATEWAY_PORT:-8080}" --postgres "$POSTGRES" --secret "$SECRET" ;;
    ingest)
      stop_service orchestrator
      stop_service agent-worker
      scenario ingest --brokers "$BROKERS" --postgres "$POSTGRES" ;;
    voice-overhead) scenario voice-overhead --gateway "$GATEWAY_HTTP" --secret "$SECRET" ;;
    voice-devices)
      scenario voice-devices --gateway "$GATEWAY_HTTP" --voice-worker "$VOICE_WORKER_HTTP" --secret "$SECRET" \
        --gateway-pid "$(cat "$SB_STATE_DIR/pids/gateway.pid")" \
        --voice-worker-pid "$(cat "$SB_STATE_DIR/pids/voice-worker.pid")" ;;
    notifications)
      scenario notifications --gateway "$GATEWAY_HTTP" --redis-url "redis://127.0.0.1:${SB_REDIS_PORT:-6390}" \
        --secret "$SECRET" --broker-pid "$(cat "$SB_STATE_DIR/tansu.pid")" \
        --notifier-pid "$(cat "$SB_STATE_DIR/pids/notifier.pid")" --gateway-pid "$(cat "$SB_STATE_DIR/pids/gateway.pid")" ;;
    notifier-codec) scenario notifier-codec ;;
    *) die "unknown scenario $name (bus, roundtrip, fanout, reconnect, connections, workflows, overhead, agents, history, ingest, voice-overhead, voice-devices, notifications, notifier-codec)" ;;
  esac
done
exit "$status"
