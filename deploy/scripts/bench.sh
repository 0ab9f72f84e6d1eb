#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make bench`: builds in release mode, starts the servers and the six services as run.sh does
# (in their own state folder, wiped first so every run starts alike), runs
# `switchboard bench bus` (one Kafka hop) and `switchboard bench roundtrip` (every hop, the offline
# engine streaming instantly so the platform is timed, not the engine's pacing), then stops
# everything whatever happened. Arguments go to `switchboard bench roundtrip`.
# Ports as for run.sh (SB_GATEWAY_PORT, ...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=bench
# shellcheck source=lib.sh
source "$ROOT/deploy/scripts/lib.sh"
cd "$ROOT"

RUN=$ROOT/deploy/scripts/run.sh
export SB_STATE_DIR=${SB_STATE_DIR:-$ROOT/.state/bench}

bash "$RUN" down >/dev/null 2>&1 || true
rm -rf "$SB_STATE_DIR"

trap 'bash "$RUN" down || warn "could not stop the bench stack (state $SB_STATE_DIR)"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Time the platform, not the offline engine's pacing.
export SWITCHBOARD_AGENT_TOKEN_RATE=${SWITCHBOARD_AGENT_TOKEN_RATE:-0}
export SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS=${SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS:-0}
bash "$RUN" up

BIN=$(cat "$SB_STATE_DIR/bin-dir")
SECRET=${SWITCHBOARD_JWT_SECRET:-$(cat "$SB_STATE_DIR/jwt-secret")}
SB_KAFKA_PORT=${SB_KAFKA_PORT:-9092}
GATEWAY=ws://127.0.0.1:${SB_GATEWAY_PORT:-8080}/ws
status=0
log "switchboard bench bus --brokers 127.0.0.1:$SB_KAFKA_PORT"
"$BIN/switchboard" bench bus --brokers "127.0.0.1:$SB_KAFKA_PORT" || status=$?
log "switchboard bench roundtrip --gateway $GATEWAY"
"$BIN/switchboard" bench roundtrip --gateway "$GATEWAY" --secret "$SECRET" "$@" || status=$?
exit "$status"
