#!/usr/bin/env bash
# Entrypoint of the Tollgate Kong image: start the Tollgate process beside Kong, keep it running, then become Kong.
#
# Kong 3.9 needs one plugin-server entry per plugin, and an entry with a *_start_cmd breaks the Admin API's `GET /`
# on 3.9.3, so Kong does not start Tollgate: this script does (kong.conf names only sockets and query commands).
#
#   1. remove sockets left by a previous run of this container (they would look "ready" before the process is);
#   2. run `tollgate serve` under a small supervisor loop that restarts it whenever it exits (1 s delay, doubling up
#      to 30 s while it keeps dying young), and whenever it stops answering its health probe: a process that is
#      alive but frozen (stopped, deadlocked, a blocked event loop) holds every request Kong sends it, so once it
#      has answered once, TOLLGATE_HEALTH_FAILURES probes in a row without a 200 from the status listener's /health
#      (each bounded by TOLLGATE_HEALTH_TIMEOUT s, one every TOLLGATE_HEALTH_INTERVAL s) get it SIGKILLed and
#      restarted at once. Defaults (1 s, 1 s, 2) kill a frozen process within about 4 s, so that a new one answers
#      within 10 s even when starting it takes a few seconds; a healthy process answers /health in well under a
#      millisecond, so only a loop stalled for over a second twice in a row is taken for frozen (raise the timeout
#      on a machine where that can happen). A process that never answers within TOLLGATE_START_TIMEOUT s of its
#      start is killed the same way;
#   3. wait until every plugin socket and the relay port answer (at most TOLLGATE_READY_TIMEOUT s; Kong starts
#      anyway after that: requests on Tollgate routes then get errors until the process is up, nothing is bypassed);
#   4. exec Kong's own entrypoint with the container's command (`/docker-entrypoint.sh kong docker-start`).
#
# Only `kong docker-start` starts Tollgate; any other command (`kong health`, `bash`...) goes straight to Kong's
# entrypoint. Settings come from the environment (TOLLGATE_SOCKET_DIR, TOLLGATE_RELAY_HOST, TOLLGATE_RELAY_PORT,
# TOLLGATE_STATUS_HOST, TOLLGATE_STATUS_PORT, TOLLGATE_REDIS_URL, TOLLGATE_LOG_LEVEL..., read by `tollgate serve`
# itself). TOLLGATE_BIN and KONG_ENTRYPOINT exist for tests.
set -Eeuo pipefail

TOLLGATE_BIN=${TOLLGATE_BIN:-/opt/tollgate/bin/tollgate}
KONG_ENTRYPOINT=${KONG_ENTRYPOINT:-/docker-entrypoint.sh}
TOLLGATE_SOCKET_DIR=${TOLLGATE_SOCKET_DIR:-/usr/local/kong/tollgate}
TOLLGATE_RELAY_HOST=${TOLLGATE_RELAY_HOST:-127.0.0.1}
TOLLGATE_RELAY_PORT=${TOLLGATE_RELAY_PORT:-8081}
TOLLGATE_STATUS_HOST=${TOLLGATE_STATUS_HOST:-127.0.0.1}
TOLLGATE_STATUS_PORT=${TOLLGATE_STATUS_PORT:-8082}
TOLLGATE_READY_TIMEOUT=${TOLLGATE_READY_TIMEOUT:-30}
TOLLGATE_HEALTH_INTERVAL=${TOLLGATE_HEALTH_INTERVAL:-1}
TOLLGATE_HEALTH_TIMEOUT=${TOLLGATE_HEALTH_TIMEOUT:-1}
TOLLGATE_HEALTH_FAILURES=${TOLLGATE_HEALTH_FAILURES:-2}
TOLLGATE_START_TIMEOUT=${TOLLGATE_START_TIMEOUT:-60}
TOLLGATE_SOCKETS=${TOLLGATE_SOCKETS:-"tollgate tollgate-proxy tollgate-token-limit tollgate-semantic-cache tollgate-guardrails tollgate-cost-quota tollgate-mcp"}
export TOLLGATE_SOCKET_DIR TOLLGATE_RELAY_HOST TOLLGATE_RELAY_PORT TOLLGATE_STATUS_HOST TOLLGATE_STATUS_PORT

log() { # level message: one JSON line on stderr, like the Tollgate process's own logs
  local msg=${2//\\/\\\\}
  msg=${msg//\"/\\\"}
  printf '{"time":%s,"level":"%s","logger":"tollgate.entrypoint","msg":"%s"}\n' "$(date +%s.%3N)" "$1" "$msg" >&2
}

healthy() { # one probe of the status listener's /health, bounded by TOLLGATE_HEALTH_TIMEOUT (connect included)
  timeout "$TOLLGATE_HEALTH_TIMEOUT" bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "GET /health HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3
    IFS= read -r status <&3
    [[ $status == "HTTP/1."[01]" 200"* ]]' probe "$TOLLGATE_STATUS_HOST" "$TOLLGATE_STATUS_PORT" 2>/dev/null
}

watch_health() { # pid: SIGKILL it when it stops answering (SIGTERM would wait in a stopped process's queue)
  local pid=$1 failures=0 answered=0 started=$SECONDS
  while sleep "$TOLLGATE_HEALTH_INTERVAL"; do
    if healthy; then
      answered=1 failures=0
      continue
    fi
    if (( answered )); then
      failures=$(( failures + 1 ))
      (( failures >= TOLLGATE_HEALTH_FAILURES )) || continue
      log error "tollgate (pid $pid) failed $failures health probes in a row; killing it"
    elif (( SECONDS - started >= TOLLGATE_START_TIMEOUT )); then
      log error "tollgate (pid $pid) did not answer its health probe within ${TOLLGATE_START_TIMEOUT}s; killing it"
    else
      continue
    fi
    kill -KILL "$pid" 2>/dev/null
    return
  done
}

supervise() {
  local delay=1 started rc child= watcher=
  # On TERM/INT stop the current Tollgate too (it runs in the background so that `wait` can be interrupted).
  trap '[[ -n "$watcher" ]] && kill "$watcher" 2>/dev/null; [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null; exit 0' TERM INT
  while :; do
    started=$SECONDS
    log info "starting: $TOLLGATE_BIN serve --socket-dir $TOLLGATE_SOCKET_DIR"
    rc=0
    "$TOLLGATE_BIN" serve --socket-dir "$TOLLGATE_SOCKET_DIR" &
    child=$!
    watch_health "$child" &
    watcher=$!
    wait "$child" || rc=$?
    child=
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    watcher=
    if (( SECONDS - started >= 30 )); then delay=1; fi
    if (( rc == 137 )); then
      # killed (by the health watch, or by an operator): a fresh process right away, the frozen one is gone
      log error "tollgate serve was killed (status $rc); restarting now"
    else
      log error "tollgate serve exited with status $rc; restarting in ${delay}s"
      sleep "$delay"
      if (( SECONDS - started < 30 )); then delay=$(( delay * 2 > 30 ? 30 : delay * 2 )); fi
    fi
  done
}

ready() {
  local name
  for name in $TOLLGATE_SOCKETS; do
    [[ -S "$TOLLGATE_SOCKET_DIR/$name.socket" ]] || return 1
  done
  # bash's /dev/tcp: is the relay listening?
  (exec 3<>"/dev/tcp/$TOLLGATE_RELAY_HOST/$TOLLGATE_RELAY_PORT") 2>/dev/null || return 1
}

if [[ "${1:-}" == "kong" && "${2:-}" == "docker-start" ]]; then
  mkdir -p "$TOLLGATE_SOCKET_DIR"
  rm -f "$TOLLGATE_SOCKET_DIR"/*.socket
  supervise &
  log info "tollgate supervisor started (pid $!)"

  deadline=$(( SECONDS + TOLLGATE_READY_TIMEOUT ))
  until ready; do
    if (( SECONDS >= deadline )); then
      log warning "tollgate not ready after ${TOLLGATE_READY_TIMEOUT}s; starting Kong anyway (the supervisor keeps trying)"
      break
    fi
    sleep 0.2
  done
  if ready; then
    log info "tollgate ready: sockets in $TOLLGATE_SOCKET_DIR, relay on $TOLLGATE_RELAY_HOST:$TOLLGATE_RELAY_PORT"
  fi
fi

exec "$KONG_ENTRYPOINT" "$@"
