#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make test`: builds the tests, starts fresh servers on the test ports (apart from a `make run`
# stack), runs the whole suite against them, always stops the servers, and exits with
# `swift test`'s code. Arguments go to `swift test` (e.g. --filter UnitTests).
# Environment: SB_TEST_KAFKA_PORT (19092), SB_TEST_REDIS_PORT (16390), SB_TEST_POSTGRES_PORT (15440),
# SB_TEST_REDIS_CLUSTER_PORT (17001: the local Redis Cluster's first port, six nodes from there),
# SB_TEST_IMAGE (build: ContainerTests run an image of this run's debug binaries, the default;
# release: the release image `make images` builds, built first if it misses the current sources).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG="test"
# shellcheck source=lib.sh
source "$ROOT/deploy/scripts/lib.sh"
cd "$ROOT"

SERVERS=$ROOT/deploy/scripts/servers.sh
export SB_STATE_DIR=$ROOT/.state/test
export SB_KAFKA_PORT=${SB_TEST_KAFKA_PORT:-19092}
export SB_REDIS_PORT=${SB_TEST_REDIS_PORT:-16390}
export SB_POSTGRES_PORT=${SB_TEST_POSTGRES_PORT:-15440}
REDIS_CLUSTER_PORT=${SB_TEST_REDIS_CLUSTER_PORT:-17001}

# The deployment files must agree with the code (products, ports, settings, probes): checked offline.
log "validating deploy/"
bash "$ROOT/deploy/validate.sh"

# The container suite (EndToEndTests.ContainerTests) runs the six services as containers of an
# image. By default (SB_TEST_IMAGE=build) that image is made from the debug binaries this run builds
# anyway (images.sh test-build, about 1.5 min with the Debian base from scratch): the same base,
# layout, user, read-only root and HEALTHCHECK as the release image, with the Swift runtime's
# libraries beside the binaries instead of linked in. The release image itself needs a release build
# of its own (~29 min here from scratch), more than CI's budget: `make test-containers`
# (SB_TEST_IMAGE=release) runs the suite against it, building it first if it misses the current
# sources (images.sh --if-missing). A missing podman or image fails the suite, it never skips.
container_suite() {
  local suite="EndToEndTests.ContainerTests" args=("$@") i filtered=0
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
      --skip) [[ $suite =~ ${args[i + 1]:-} ]] && { echo skipped; return; } ;;
      --skip=*) [[ $suite =~ ${args[i]#--skip=} ]] && { echo skipped; return; } ;;
    esac
  done
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
      --filter) filtered=1; [[ $suite =~ ${args[i + 1]:-} ]] && { echo selected; return; } ;;
      --filter=*) filtered=1; [[ $suite =~ ${args[i]#--filter=} ]] && { echo selected; return; } ;;
    esac
  done
  if [ "$filtered" -eq 1 ]; then echo skipped; else echo selected; fi
}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
CONTAINER_SUITE=$(container_suite "$@")
case "${SB_TEST_IMAGE:-build}" in
  build) export SWITCHBOARD_TEST_IMAGE=localhost/switchboard:test-build ;;
  release)
    export SWITCHBOARD_TEST_IMAGE=${SB_IMAGE:-localhost/switchboard:latest}
    if [ "$CONTAINER_SUITE" = selected ]; then
      images_started=$SECONDS
      log "release image for ContainerTests: images.sh --if-missing"
      SB_IMAGE=$SWITCHBOARD_TEST_IMAGE bash "$ROOT/deploy/scripts/images.sh" --if-missing
      log "release image ready in $((SECONDS - images_started)) s"
    fi
    ;;
  *) die "SB_TEST_IMAGE is build or release, not ${SB_TEST_IMAGE}" ;;
esac

# Build first: a compile error then fails fast, without servers idling through the build.
log "building the tests"
swift build --build-tests
BIN_DIR=$(swift build --show-bin-path)
if [ "$CONTAINER_SUITE" = selected ] && [ "${SB_TEST_IMAGE:-build}" = build ]; then
  images_started=$SECONDS
  log "image of this build for ContainerTests: images.sh test-build"
  SB_IMAGE=$SWITCHBOARD_TEST_IMAGE bash "$ROOT/deploy/scripts/images.sh" test-build "$BIN_DIR"
  log "test image ready in $((SECONDS - images_started)) s"
fi

# Each run starts clean: stop whatever an interrupted run left on these ports, then wipe.
CLUSTER=$ROOT/deploy/scripts/redis-cluster.sh
bash "$SERVERS" stop >/dev/null 2>&1 || true
bash "$CLUSTER" stop "$REDIS_CLUSTER_PORT" >/dev/null 2>&1 || true
rm -rf "$SB_STATE_DIR"

stop_servers() {
  bash "$CLUSTER" stop "$REDIS_CLUSTER_PORT" || warn "could not stop the test Redis Cluster"
  bash "$SERVERS" stop || warn "could not stop the test servers (state $SB_STATE_DIR)"
}
trap stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$SERVERS" start
# A 3-primary Redis Cluster for the cluster suites (a few seconds to form).
bash "$CLUSTER" start "$REDIS_CLUSTER_PORT"

export SWITCHBOARD_TEST_KAFKA=127.0.0.1:$SB_KAFKA_PORT
export SWITCHBOARD_TEST_REDIS=redis://127.0.0.1:$SB_REDIS_PORT
SWITCHBOARD_TEST_REDIS_CLUSTER=redis+cluster://$(for ((i = 0; i < 6; i++)); do printf '127.0.0.1:%s,' $((REDIS_CLUSTER_PORT + i)); done)
export SWITCHBOARD_TEST_REDIS_CLUSTER=${SWITCHBOARD_TEST_REDIS_CLUSTER%,}
export SWITCHBOARD_TEST_POSTGRES=postgres://switchboard:switchboard@127.0.0.1:$SB_POSTGRES_PORT/switchboard
export SWITCHBOARD_BIN_DIR=$BIN_DIR
# For tests that run a broker of their own (and restart it).
SB_TANSU_BIN=$(bash "$SERVERS" tansu-bin)
export SB_TANSU_BIN

status=0
# One test at a time: the end-to-end suites start whole stacks, and 2 cores do not run two at once well.
swift test --skip-build --no-parallel "$@" || status=$?
if [ "$status" -ne 0 ]; then
  warn "swift test exited with $status; server logs are in $SB_STATE_DIR"
fi
exit "$status"
