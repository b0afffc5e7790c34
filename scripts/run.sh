#!/usr/bin/env bash
# The run command (README): installs what is missing, starts the local broker (Tansu, memory
# engine), the ingest gateway, the aggregator and the scorer on the embedded SQLite store, sends
# a week of generated events with incidents through the gateway, and prints the daily KPIs per
# tenant and agent and the anomalies found next to the injected incidents. Services keep running; `scripts/run.sh stop` stops everything it started. Safe to run
# twice (a second run stops the first one's services and starts afresh).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
export AGENTOPS__KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT"
export AGENTOPS__STORE__URL="${AGENTOPS__STORE__URL:-sqlite://$RUN_DIR/agentops.db}"
# A per-run signing key for the demo API (production: a secret from the environment/Helm).
export AGENTOPS__AUTH_API__JWT_SECRET="${AGENTOPS__AUTH_API__JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
stop_services() {
  for name in auth-api scorer aggregator gateway; do
    pidfile="$RUN_DIR/$name.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill -TERM "$(cat "$pidfile")"; log "$name stopped"
    fi
    rm -f "$pidfile"
  done
}
if [ "${1:-}" = "stop" ]; then
  stop_services
  "$REPO_ROOT/scripts/tansu.sh" stop
  exit 0
fi
"$REPO_ROOT/scripts/install-deps.sh"
export ORT_DYLIB_PATH="$ORT_DIR/libonnxruntime.so"
log "building (release)"
cargo build --release --locked --bins
BIN="$REPO_ROOT/target/release"
stop_services
"$REPO_ROOT/scripts/tansu.sh" stop
rm -f "$RUN_DIR/agentops.db"*
"$REPO_ROOT/scripts/tansu.sh" start memory
mkdir -p "$RUN_DIR"
log "creating topics and applying store migrations ($AGENTOPS__STORE__URL)"
"$BIN/ingest" topics
"$BIN/aggregator" migrate
"$BIN/ingest" serve >"$RUN_DIR/gateway.log" 2>&1 & echo $! >"$RUN_DIR/gateway.pid"
"$BIN/aggregator" run >"$RUN_DIR/aggregator.log" 2>&1 & echo $! >"$RUN_DIR/aggregator.pid"
"$BIN/scorer" run >"$RUN_DIR/scorer.log" 2>&1 & echo $! >"$RUN_DIR/scorer.pid"
"$BIN/auth-api" serve >"$RUN_DIR/auth-api.log" 2>&1 & echo $! >"$RUN_DIR/auth-api.pid"
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:8080/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
days="${DEMO_DAYS:-7}"
log "generating $days simulated days (2 tenants x 4 agents, incidents) through the HTTP gateway"
"$BIN/ingest" gen --to http --out "$RUN_DIR/demo" --tenants 2 --agents 4 --control-agents 1 \
  --days "$days" --start 2025-10-01 --tasks-per-day 2000
log "waiting for the aggregator and the scorer to catch up"
sleep 10
last=$(date -u -d "2025-10-01 + $((days - 1)) days" +%F)
for tenant in acme globex; do
  "$BIN/aggregator" show --tenant "$tenant" --from 2025-10-01 --to "$last"
done
for tenant in acme globex; do
  "$BIN/scorer" show --tenant "$tenant" --incidents "$RUN_DIR/demo/incidents.json"
done
log "demo user demo@example.com (password demo-password) may read acme and globex"
echo "demo-password" | "$BIN/auth-api" create-user --email demo@example.com --username demo >/dev/null
for tenant in acme globex; do "$BIN/auth-api" grant --email demo@example.com --tenant "$tenant" >/dev/null; done
log "injected incidents: $RUN_DIR/demo/incidents.json; exact daily metrics: $RUN_DIR/demo/truth.jsonl"
log "gateway on http://127.0.0.1:8080 (key: ingest api-key create --tenant acme); logs in $RUN_DIR"
cat <<'EOF'
API on http://127.0.0.1:8090 (OpenAPI: /api/openapi.json):
  TOKEN=$(curl -s -H 'content-type: application/json' -d '{"login":"demo@example.com","password":"demo-password"}' \
          http://127.0.0.1:8090/api/v1/login | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -H "authorization: Bearer $TOKEN" 'http://127.0.0.1:8090/api/v1/tenants/acme/metrics/daily?from=2025-10-01&to=2025-10-07'
  curl -s -H "authorization: Bearer $TOKEN" 'http://127.0.0.1:8090/api/v1/tenants/acme/anomalies?from=2025-10-01T00:00:00Z&to=2025-10-08T00:00:00Z&only_flagged=true'
EOF
log "stop everything with: scripts/run.sh stop"
