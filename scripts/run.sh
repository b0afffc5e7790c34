#!/usr/bin/env bash
# The run command (README): installs what is missing, starts the local broker (Tansu, memory
# engine), the ingest gateway, the aggregator, the scorer and the auth-api on the embedded SQLite
# store, a local Alertmanager (Debian prometheus-alertmanager, config in .run/) and the alerter
# posting to it, sends a week of generated events with incidents through the gateway, waits until
# the aggregator, the scorer and the alerter have caught up, and prints the daily KPIs per tenant
# and agent, the anomalies found and the alerts fired next to the injected incidents. Services keep running (a demo user may
# query the API); `scripts/run.sh stop` stops everything it started. Safe to run twice (a second
# run stops the first one's services and starts afresh).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
export AGENTOPS__KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT"
export AGENTOPS__STORE__URL="${AGENTOPS__STORE__URL:-sqlite://$RUN_DIR/agentops.db}"
export AGENTOPS__AGGREGATOR__METRICS_LISTEN="${AGENTOPS__AGGREGATOR__METRICS_LISTEN:-127.0.0.1:9101}"
# The demo's week lies in the past (simulated time): days become final by the event-time
# watermark only, not by the clock whenever the aggregator has caught up.
export AGENTOPS__AGGREGATOR__FINALIZE_DAYS_BY_CLOCK=false
export AGENTOPS__SCORER__METRICS_LISTEN="${AGENTOPS__SCORER__METRICS_LISTEN:-127.0.0.1:9102}"
export AGENTOPS__ALERTER__METRICS_LISTEN="${AGENTOPS__ALERTER__METRICS_LISTEN:-127.0.0.1:9103}"
ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-9093}"
export AGENTOPS__ALERTER__ALERTMANAGER_URLS="[\"http://127.0.0.1:$ALERTMANAGER_PORT\"]"
# A per-run signing key for the demo API (production: a secret from the environment/Helm).
export AGENTOPS__AUTH_API__JWT_SECRET="${AGENTOPS__AUTH_API__JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
stop_services() {
  for name in alerter alertmanager auth-api scorer aggregator gateway; do
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

# Sums of Prometheus metrics (all label sets of each) in a /metrics text on stdin, in the order
# of the names given.
metric_sums() {
  awk -v names="$*" '
    BEGIN { n = split(names, m, " ") }
    { for (i = 1; i <= n; i++)
        if (index($1, m[i]) == 1 && (length($1) == length(m[i]) || substr($1, length(m[i]) + 1, 1) == "{")) s[i] += $2 }
    END { for (i = 1; i <= n; i++) printf "%d ", s[i] }'
}

# The alerter has caught up: no lag on the anomaly topic and no verdict consumed for a second.
wait_alerter_caught_up() {
  local prev="" now
  for _ in $(seq 1 120); do
    now="$(curl -fs "http://$AGENTOPS__ALERTER__METRICS_LISTEN/metrics" 2>/dev/null |
      metric_sums alerter_verdicts_in_total alerter_consumer_lag alerter_alerts_opened_total)"
    # shellcheck disable=SC2086
    set -- $now
    printf '\r  alerter: %s verdicts in, lag %s, %s alerts opened   ' "$@" >&2
    if [ "$#" = 3 ] && [ "$1" != 0 ] && [ "$2" = 0 ] && [ "$now" = "$prev" ]; then
      echo >&2
      return 0
    fi
    prev="$now"
    sleep 1
  done
  echo >&2
  log "the alerter did not catch up within 2 minutes; showing what is there"
}

# The alerts the alerter fired (its JSON log), next to the injected incidents.
show_alerts() {
  python3 - "$RUN_DIR/alerter.log" "$RUN_DIR/demo/incidents.json" <<'PY'
import json, sys
from datetime import datetime, timezone
alerts = {}
for line in open(sys.argv[1]):
    try:
        f = json.loads(line).get("fields", {})
    except ValueError:
        continue
    if f.get("message") in ("alert opened", "alert resolved"):
        a = alerts.setdefault(f["incident"], dict(f, ends_at=None))
        a.update({k: v for k, v in f.items() if k != "message"})
iso = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
print("\nInjected incidents:")
for i in sorted(json.load(open(sys.argv[2])), key=lambda i: (i["tenant_id"], i["agent_id"], i["start_ms"])):
    name = f"{i['tenant_id']}/{i['agent_id']}"
    print(f"  {name:<24} {i['kind']:<22} {iso(i['start_ms'])} .. {iso(i['end_ms'])}")
print(f"Alerts fired ({len(alerts)}):")
for a in sorted(alerts.values(), key=lambda a: (a["tenant"], a["agent"], a["starts_at"])):
    name, ends = f"{a['tenant']}/{a['agent']}", (a["ends_at"] or "still open")[:16]
    windows = f", {a['flagged_windows']} flagged windows" if "flagged_windows" in a else ""
    print(f"  {name:<24} {a['kpi']:<22} {a['starts_at'][:16]}Z .. {ends}{'Z' if a['ends_at'] else ''}  {a['severity']}{windows}")
PY
}

# Caught up: the aggregator has no lag, the scorer has consumed every KPI window the aggregator
# published, and neither moved for a second.
wait_caught_up() {
  local agg="$AGENTOPS__AGGREGATOR__METRICS_LISTEN" sc="$AGENTOPS__SCORER__METRICS_LISTEN" prev="" now
  for _ in $(seq 1 240); do
    now="$(curl -fs "http://$agg/metrics" 2>/dev/null |
      metric_sums aggregator_events_in_total aggregator_consumer_lag aggregator_windows_out_total)"
    now="$now$(curl -fs "http://$sc/metrics" 2>/dev/null | metric_sums scorer_windows_in_total)"
    # shellcheck disable=SC2086
    set -- $now
    printf '\r  aggregator: %s records in, lag %s; KPI windows: %s published, %s scored   ' "$@" >&2
    if [ "$2" = 0 ] && [ "$3" = "$4" ] && [ "$3" != 0 ] && [ "$now" = "$prev" ]; then
      echo >&2
      return 0
    fi
    prev="$now"
    sleep 1
  done
  echo >&2
  log "not caught up after 4 minutes; showing what is there"
}
stop_services
"$REPO_ROOT/scripts/tansu.sh" stop
rm -f "$RUN_DIR/agentops.db"* "$RUN_DIR/alerter.log"
"$REPO_ROOT/scripts/tansu.sh" start memory
mkdir -p "$RUN_DIR"
log "creating topics and applying store migrations ($AGENTOPS__STORE__URL)"
"$BIN/ingest" topics
"$BIN/aggregator" migrate
"$BIN/ingest" serve >"$RUN_DIR/gateway.log" 2>&1 & echo $! >"$RUN_DIR/gateway.pid"
"$BIN/aggregator" run >"$RUN_DIR/aggregator.log" 2>&1 & echo $! >"$RUN_DIR/aggregator.pid"
"$BIN/scorer" run >"$RUN_DIR/scorer.log" 2>&1 & echo $! >"$RUN_DIR/scorer.pid"
"$BIN/auth-api" serve >"$RUN_DIR/auth-api.log" 2>&1 & echo $! >"$RUN_DIR/auth-api.pid"
# A local Alertmanager (no receivers: the demo shows its page and API) and the alerter.
cat >"$RUN_DIR/alertmanager.yml" <<'YML'
route:
  receiver: demo
  group_by: [alertname, tenant, agent, kpi]
  group_wait: 5s
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: demo
YML
rm -rf "$RUN_DIR/alertmanager"
/usr/bin/prometheus-alertmanager --config.file="$RUN_DIR/alertmanager.yml" \
  --storage.path="$RUN_DIR/alertmanager" --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
  --cluster.listen-address= >"$RUN_DIR/alertmanager.log" 2>&1 & echo $! >"$RUN_DIR/alertmanager.pid"
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready" >/dev/null 2>&1 && break; sleep 0.2; done
AGENTOPS_LOG_FORMAT=json "$BIN/alerter" run >"$RUN_DIR/alerter.log" 2>&1 & echo $! >"$RUN_DIR/alerter.pid"
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:8080/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
days="${DEMO_DAYS:-7}"
log "generating $days simulated days (2 tenants x 4 agents, incidents in working hours) through the HTTP gateway"
"$BIN/ingest" gen --to http --out "$RUN_DIR/demo" --tenants 2 --agents 4 --control-agents 1 \
  --days "$days" --start 2025-10-01 --tasks-per-day 2000 --incidents-in-working-hours
log "waiting for the aggregator and the scorer to catch up"
wait_caught_up
last=$(date -u -d "2025-10-01 + $((days - 1)) days" +%F)
for tenant in acme globex; do
  "$BIN/aggregator" show --tenant "$tenant" --from 2025-10-01 --to "$last"
done
for tenant in acme globex; do
  "$BIN/scorer" show --tenant "$tenant" --incidents "$RUN_DIR/demo/incidents.json"
done
log "waiting for the alerter to catch up"
wait_alerter_caught_up
show_alerts
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
log "dashboard page: http://127.0.0.1:8090/ui/ (sign in as demo@example.com / demo-password; tenant acme or globex, 2025-10-01 to 2025-10-07)"
log "Alertmanager on http://127.0.0.1:$ALERTMANAGER_PORT (its page; alerts still open: curl http://127.0.0.1:$ALERTMANAGER_PORT/api/v2/alerts)"
log "alerter metrics on http://$AGENTOPS__ALERTER__METRICS_LISTEN/metrics; alerts opened and resolved: $RUN_DIR/alerter.log"
log "stop everything with: scripts/run.sh stop"
