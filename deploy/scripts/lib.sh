# Helpers shared by servers.sh, run.sh, test.sh and bench.sh: source it, don't run it.
# shellcheck shell=bash

# Every script names itself in its messages, e.g. LOG_TAG=servers.
log() { printf '\033[1;34m[%s]\033[0m %s\n' "${LOG_TAG:-switchboard}" "$*" >&2; }
warn() { printf '\033[1;33m[%s] warning:\033[0m %s\n' "${LOG_TAG:-switchboard}" "$*" >&2; }
die() { printf '\033[1;31m[%s] error:\033[0m %s\n' "${LOG_TAG:-switchboard}" "$*" >&2; exit 1; }

# Is something listening on PORT, on 127.0.0.1 or on all addresses?
port_busy() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# Names what listens on PORT, for error messages: "python3 (pid 123)".
port_owner() {
  local who=""
  if command -v ss >/dev/null 2>&1; then
    who=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n1 \
          | sed -E 's/users:\(\("([^"]*)",pid=([0-9]+)/\1 (pid \2)/' || true)
  fi
  echo "${who:-an unknown process}"
}

# Prints the pid in FILE if that process is alive and its command name is NAME.
# The name check guards against a stale pid file whose number now belongs to another program.
live_pid() {
  local file=$1 name=${2:0:15} pid state
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  # A zombie has exited already; it only waits for its parent to collect it.
  state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ] || return 1
  echo "$pid"
}

# Is PID still running (and not a zombie)?
pid_alive() {
  local state
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ]
}

# Waits until PID is gone, up to SECONDS; returns non-zero if it is still there.
wait_gone() {
  local pid=$1 seconds=$2 i
  for ((i = 0; i < seconds * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}
