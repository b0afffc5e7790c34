#!/usr/bin/env bash
# Starts or stops the local Tansu broker on 127.0.0.1:$KAFKA_PORT (default 9092).
#   scripts/tansu.sh start [memory|sqlite]   memory (default) is fast; sqlite survives restarts
#   scripts/tansu.sh stop
#   scripts/tansu.sh status
# Idempotent: starting a running broker does nothing. State lives in $RUN_DIR (.run/).
source "$(dirname "$0")/lib.sh"
cmd="${1:-start}"; engine="${2:-memory}"
pidfile="$RUN_DIR/tansu.pid"
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
case "$cmd" in
  start)
    if running; then log "tansu already running (pid $(cat "$pidfile"))"; exit 0; fi
    [ -x "$TANSU_BIN" ] || "$REPO_ROOT/scripts/install-tansu.sh"
    mkdir -p "$RUN_DIR"
    case "$engine" in
      memory) storage="memory://tansu/" ;;
      sqlite) storage="sqlite://$RUN_DIR/tansu.db" ;;
      *) echo "engine must be memory or sqlite" >&2; exit 2 ;;
    esac
    nohup "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine "$storage" >"$RUN_DIR/tansu.log" 2>&1 &
    echo $! >"$pidfile"
    wait_port || { echo "tansu did not open port $KAFKA_PORT; see $RUN_DIR/tansu.log" >&2; exit 1; }
    log "tansu running on 127.0.0.1:$KAFKA_PORT ($engine engine, pid $(cat "$pidfile"))"
    ;;
  stop)
    if running; then kill "$(cat "$pidfile")"; log "tansu stopped"; fi
    rm -f "$pidfile"
    ;;
  status)
    if running; then echo "running (pid $(cat "$pidfile"))"; else echo "stopped"; exit 1; fi
    ;;
  *) echo "usage: $0 start [memory|sqlite] | stop | status" >&2; exit 2 ;;
esac
