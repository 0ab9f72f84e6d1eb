#!/bin/sh
# The image's HEALTHCHECK: GET /healthz on the HTTP port of the service this container runs.
# One image holds all six services, so the port is found from the container's command: PID 1 is
# tini, and what follows its "--" is the service and its flags (as compose's `command` and
# Kubernetes' `args` give them). SWITCHBOARD_HTTP_PORT / --http-port win over the default port.
set -eu

service=""
port="${SWITCHBOARD_HTTP_PORT:-}"
host="${SWITCHBOARD_HTTP_HOST:-127.0.0.1}"

# No argument of these services contains a newline: one argument per line.
args=$(tr '\0' '\n' </proc/1/cmdline)
seen_separator=0
expect=""
IFS='
'
for arg in $args; do
  if [ "$seen_separator" -eq 0 ]; then
    [ "$arg" = "--" ] && seen_separator=1
    continue
  fi
  if [ -z "$service" ]; then service=${arg##*/}; continue; fi
  case "$expect" in
    port) port=$arg; expect=""; continue ;;
    host) host=$arg; expect=""; continue ;;
  esac
  case "$arg" in
    --http-port) expect=port ;;
    --http-port=*) port=${arg#--http-port=} ;;
    --http-host) expect=host ;;
    --http-host=*) host=${arg#--http-host=} ;;
  esac
done

if [ -z "$port" ]; then
  case "$service" in
    gateway) port=8080 ;;
    orchestrator) port=8081 ;;
    agent-worker) port=8082 ;;
    voice-worker) port=8083 ;;
    workflow-runner) port=8084 ;;
    notifier) port=8085 ;;
    # The CLI (`switchboard ...`) or anything else is not a service: nothing to check.
    *) exit 0 ;;
  esac
fi
case "$host" in 0.0.0.0|::|"") host=127.0.0.1 ;; esac
case "$host" in *:*) host="[$host]" ;; esac

exec curl --fail --silent --show-error --max-time 3 --output /dev/null "http://$host:$port/healthz"
