#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make images`: Switchboard's container image built on this machine with podman, without any image
# registry (none is reachable here):
#   1. the runtime base: Debian 12 minbase from Debian's packages with debootstrap, plus the packages
#      in deploy/docker/runtime-packages.txt (the list deploy/docker/Dockerfile installs too),
#      security updates applied, imported into podman as localhost/switchboard-runtime:bookworm-<hash>;
#      built again only when that list changes.
#   2. the release binaries with a statically linked Swift runtime
#      (swift build -c release --static-swift-stdlib), librdkafka from /usr/local (install-deps.sh
#      builds it), without debug info, staged as a binaries-only image;
#   3. the image itself, localhost/switchboard:latest, from deploy/docker/Dockerfile's final stage
#      (the same stage a registry build ends with) on top of 1. and 2.
#
#   images.sh [all]         1–3, each skipped when already built from the same inputs
#   images.sh --if-missing  nothing when localhost/switchboard:latest holds the current sources, else all
#   images.sh base          1 only
#   images.sh check         the image's own checks: every binary's libraries resolve, non-root user
#   images.sh test-build BIN_DIR
#                           localhost/switchboard:test-build: the image as 3. makes it, but from the
#                           debug binaries `make test` has just built (BIN_DIR), with the Swift runtime's
#                           libraries beside them instead of linked in. It spares CI a release build of
#                           its own (~29 min here), so ContainerTests run in every `make test`.
# Environment: SB_IMAGE (localhost/switchboard:latest),
# SB_IMAGES_SCRATCH_PATH (the build folder, .build-images: apart from `make run`'s .build),
# SB_DEBIAN_MIRROR (else read from
# /etc/apt/sources.list(.d)), CONTAINERS_CONF (else deploy/podman/containers.conf).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG="images"
# shellcheck source=lib.sh
source "$ROOT/deploy/scripts/lib.sh"
cd "$ROOT"

IMAGE=${SB_IMAGE:-localhost/switchboard:latest}
SCRATCH=${SB_IMAGES_SCRATCH_PATH:-$ROOT/.build-images}
PACKAGES_FILE=$ROOT/deploy/docker/runtime-packages.txt
STATE=$ROOT/.state/images
SUITE=bookworm
PRODUCTS=(gateway orchestrator agent-worker voice-worker workflow-runner notifier switchboard)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and podman's image store need it): sudo make images"
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run deploy/scripts/install-deps.sh (or make deps)"
done

now() { date +%s; }
elapsed() { echo "$(($(now) - $1)) s"; }

# The packages, without comments and blank lines.
runtime_packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PACKAGES_FILE" | grep -v '^$'; }

# The first URI of an apt source for SUITE (deb822 .sources stanzas or one-line .list entries).
apt_uri_for() {
  local suite=$1 file uri
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    uri=$(awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; suites = ""; uris = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/) types = " " substr($i, 7) " "
          if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
          if ($i ~ /^URIs:/) uris = substr($i, 6)
        }
        gsub(/\t/, " ", suites)
        if (types ~ / deb / && suites ~ (" " suite " ")) { split(uris, u, " "); for (k in u) if (u[k] != "") { print u[k]; exit } }
      }' "$file")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    uri=$(awk -v suite="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) { print $i; exit } }' "$file")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  return 1
}

image_exists() { podman image exists "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# 1. The runtime base, from Debian's packages.
base_tag() {
  local hash
  # The list and this script's way of building from it decide the base's content.
  hash=$( { runtime_packages; echo "$SUITE"; sed -n '/^build_base()/,/^}/p' "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12)
  echo "localhost/switchboard-runtime:$SUITE-$hash"
}

build_base() {
  local tag=$1 started mirror security rootfs packages
  started=$(now)
  mirror=${SB_DEBIAN_MIRROR:-$(apt_uri_for "$SUITE" || true)}
  [ -n "$mirror" ] || die "no Debian mirror for $SUITE in /etc/apt/sources.list(.d); set SB_DEBIAN_MIRROR"
  security=$(apt_uri_for "$SUITE-security" || true)
  packages=$(runtime_packages | paste -sd, -)
  rootfs=$STATE/rootfs
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  log "debootstrap $SUITE (minbase) from $mirror with: $packages"
  debootstrap --variant=minbase --include="$packages" "$SUITE" "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$STATE/debootstrap.log" >&2; die "debootstrap failed (log: $STATE/debootstrap.log)"; }

  # The same sources a debian:bookworm-slim image has, so updates (security ones above all) apply
  # now and `apt-get` works in a derived image.
  rm -f "$rootfs/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" "$SUITE" "$SUITE"
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$security" "$SUITE"
    fi
  } >"$rootfs/etc/apt/sources.list.d/debian.sources"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  log "applying $SUITE-updates and security updates in the new root"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade && apt-get clean' \
    >"$STATE/upgrade.log" 2>&1 || { tail -n 30 "$STATE/upgrade.log" >&2; die "apt-get upgrade in the new root failed"; }
  # What a container gets from its runtime, and what an image needs no copy of.
  : >"$rootfs/etc/resolv.conf"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
         "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/* "$rootfs"/dev/*

  log "importing it into podman as $tag"
  tar --numeric-owner -C "$rootfs" -c . \
    | podman import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$tag" >/dev/null
  rm -rf "$rootfs"
  # Bases of former package lists are of no further use (one still under an image stays).
  podman images --format '{{.Repository}}:{{.Tag}}' localhost/switchboard-runtime | grep -vxF "$tag" \
    | xargs -r podman rmi >/dev/null 2>&1 || true
  log "runtime base built in $(elapsed "$started")"
}

ensure_base() {
  local tag
  tag=$(base_tag)
  if image_exists "$tag"; then
    log "runtime base $tag is there"
  else
    build_base "$tag"
  fi
  BASE=$tag
}

# ---------------------------------------------------------------------------------------------
# 2. and 3. The binaries and the image.

# What the image is built from: the sources (committed, changed or new), the runtime base, the
# A deleted tracked file is skipped (sha256sum complains, the rest still counts).
source_id() {
  local paths=(Package.swift Shared Services deploy/docker)
  {
    # The files as they are in the working tree, committed or not, so committing changes nothing.
    git ls-files -z --cached --others --exclude-standard -- "${paths[@]}" | sort -z | xargs -0r sha256sum 2>/dev/null || true
    base_tag
  } | sha256sum | cut -c1-16
}

image_source_id() {
  podman image inspect --format '{{ index .Labels "org.switchboard.source-id" }}' "$IMAGE" 2>/dev/null || true
}

build_image() {
  local started step bin id
  started=$(now)
  id=$(source_id)
  ensure_base

  step=$(now)
  # A build folder of its own: --static-swift-stdlib is in every compile command, so sharing .build
  # with `make run`'s dynamic release build would recompile everything at each switch.
  log "swift build -c release --static-swift-stdlib --scratch-path $SCRATCH (the Swift runtime linked into each binary)"
  # Product by product: a plain `swift build` also builds the tests' support library, which imports
  # the Testing module, and a --static-swift-stdlib build has no Testing to import.
  for p in "${PRODUCTS[@]}"; do swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product "$p"; done
  bin=$(swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --show-bin-path)
  log "release build took $(elapsed "$step")"

  step=$(now)
  stage_and_build "$bin" "$id" static
  log "image built in $(elapsed "$step") (everything: $(elapsed "$started"))"
  check_image
  report
}

# The image from the binaries in $1 (source id $2), the Swift runtime $3 (static: linked in; bundled:
# its libraries copied beside librdkafka).
stage_and_build() {
  local bin=$1 id=$2 runtime=$3 context triplet
  # The binaries as the Dockerfile's build stage leaves them in /out: /usr/local/bin with the
  # resource bundles beside the executables, and librdkafka in /usr/local/lib/<triplet>.
  context=$STATE/binaries
  rm -rf "$context"
  mkdir -p "$context/out/usr/local/bin"
  for p in "${PRODUCTS[@]}"; do install -m 0755 "$bin/$p" "$context/out/usr/local/bin/"; done
  # As the Dockerfile's build stage: without their DWARF (a third of a release binary's size with the
  # Swift runtime linked in), with their symbols, so a crash's backtrace still names functions.
  strip --strip-debug "${PRODUCTS[@]/#/$context/out/usr/local/bin/}"
  find "$bin" -maxdepth 1 -name '*.resources' -exec cp -R {} "$context/out/usr/local/bin/" \;
  triplet=$(gcc -dumpmachine)
  compgen -G "/usr/local/lib/$triplet/librdkafka*.so*" >/dev/null \
    || die "no librdkafka in /usr/local/lib/$triplet: run deploy/scripts/install-deps.sh"
  mkdir -p "$context/out/usr/local/lib/$triplet"
  cp -a "/usr/local/lib/$triplet"/librdkafka*.so* "$context/out/usr/local/lib/$triplet/"
  if [ "$runtime" = bundled ]; then
    # The toolchain's libraries the binaries load (ldd names them by their path in the toolchain).
    ldd "${PRODUCTS[@]/#/$context/out/usr/local/bin/}" | awk -v toolchain="$(swift_runtime_dir)" \
      'index($3, toolchain) == 1 { print $3 }' | sort -u | xargs -r cp -L -t "$context/out/usr/local/lib/$triplet/"
  fi
  tar --numeric-owner -C "$context" -c out | podman import --quiet - localhost/switchboard-binaries:"$id" >/dev/null
  rm -rf "$context"

  log "building $IMAGE from deploy/docker/Dockerfile (stage runtime) on $BASE"
  # --format docker: OCI image configs have no HEALTHCHECK.
  podman build --format docker --target runtime --network host \
    --build-arg RUNTIME_BASE="$BASE" \
    --build-arg BINARIES=localhost/switchboard-binaries:"$id" \
    --build-arg SWIFT_RUNTIME="$runtime" \
    --label org.switchboard.source-id="$id" \
    --label org.opencontainers.image.revision="$(git rev-parse HEAD)" \
    -f deploy/docker/Dockerfile -t "$IMAGE" . >"$STATE/build.log" 2>&1 \
    || { tail -n 30 "$STATE/build.log" >&2; die "podman build failed (log: $STATE/build.log)"; }
  podman rmi localhost/switchboard-binaries:"$id" >/dev/null 2>&1 || true
  podman image prune -f >/dev/null 2>&1 || true
}

# The folder of the toolchain's Swift runtime libraries (libswiftCore.so and the rest).
swift_runtime_dir() {
  echo "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")/lib/swift/linux"
}

# `make test`'s image: the tests' debug binaries in the image 3. makes.
build_test_image() {
  local bin=$1 started
  started=$(now)
  [ -x "$bin/gateway" ] || die "no binaries in $bin: swift build first"
  ensure_base
  stage_and_build "$bin" "test-$(date +%s)" bundled
  log "test image built in $(elapsed "$started")"
  check_image bundled
  report
}

# The image's own checks, in a throw-away container with the settings the test and compose use.
check_image() {
  image_exists "$IMAGE" || die "$IMAGE is not built: make images"
  local out runtime=${1:-static}
  out=$(podman run --rm --read-only --network none --no-healthcheck --env SWIFT_RUNTIME="$runtime" \
    --entrypoint /bin/sh "$IMAGE" -c '
    set -e
    missing=$(for f in /usr/local/bin/*; do [ -f "$f" ] && ldd "$f" 2>&1 | grep "not found" | sed "s|^|$f: |"; done; true)
    [ -z "$missing" ] || { echo "unresolved libraries: $missing"; exit 1; }
    if [ "$SWIFT_RUNTIME" = static ] && ldd /usr/local/bin/gateway | grep -q libswiftCore; then
      echo "the Swift runtime is linked dynamically"; exit 1
    fi
    [ "$(id -u)" != 0 ] || { echo "runs as root"; exit 1; }
    if touch /usr/local/bin/probe 2>/dev/null; then echo "root filesystem writable"; exit 1; fi
    test -f /usr/local/bin/switchboard_Gateway.resources/Console/index.html
    echo "uid $(id -u), libraries resolved"') || die "image check failed: $out"
  log "checked: $out"
}

report() {
  log "$IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec) ($BASE: $(podman image inspect --format '{{.Size}}' "$BASE" | numfmt --to=iec))"
}

mkdir -p "$STATE"
case "${1:-all}" in
  all) build_image ;;
  --if-missing)
    id=$(source_id)
    if [ "$(image_source_id)" = "$id" ]; then
      log "$IMAGE holds the current sources ($id)"
    else
      build_image
    fi
    ;;
  base) ensure_base; report_base=$(podman image inspect --format '{{.Size}}' "$BASE" | numfmt --to=iec); log "$BASE: $report_base" ;;
  check) check_image ;;
  test-build)
    [ -n "${2:-}" ] || die "usage: images.sh test-build BIN_DIR"
    IMAGE=${SB_IMAGE:-localhost/switchboard:test-build}
    build_test_image "$2"
    ;;
  *) die "usage: images.sh [all|--if-missing|base|check|test-build BIN_DIR]" ;;
esac
