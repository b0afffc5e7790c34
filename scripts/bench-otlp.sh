#!/usr/bin/env bash
# OTLP gateway throughput: protobuf ExportTraceServiceRequests of 500 spans, 8 in flight, posted
# to `ingest serve` (POST /v1/traces), which answers only after Tansu (memory engine)
# acknowledged the task events; everything on this machine. Two runs: every span an agent
# invocation (spans = task events, comparable to scripts/bench-gateway.sh), and one agent span
# with two chat spans per task. Not part of CI (heavy); numbers go to README.md.
#   scripts/bench-otlp.sh [spans]      (default 300000)
export KAFKA_PORT="${BENCH_KAFKA_PORT:-19093}"
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
spans="${1:-300000}"
export AGENTOPS_RUN_DIR="$REPO_ROOT/.run/bench-otlp"
export AGENTOPS__KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT"
export AGENTOPS__KAFKA__TOPICS__TASK_EVENTS="bench-otlp-$$"
export AGENTOPS__KAFKA__PARTITIONS=4
export AGENTOPS__STORE__URL="sqlite://$AGENTOPS_RUN_DIR/bench.db"
export AGENTOPS__INGEST__LISTEN="127.0.0.1:18081"
cargo build --release --locked -p ingest
cargo bench --locked -p ingest --bench otlp_load --no-run
BIN="$REPO_ROOT/target/release"
rm -rf "$AGENTOPS_RUN_DIR"; mkdir -p "$AGENTOPS_RUN_DIR"

"$REPO_ROOT/scripts/tansu.sh" start memory
trap '"$REPO_ROOT/scripts/tansu.sh" stop; [ -n "${gw:-}" ] && kill "$gw" 2>/dev/null || true' EXIT
"$BIN/ingest" topics >/dev/null
key="$("$BIN/ingest" api-key create --tenant bench 2>/dev/null | tail -1)"
"$BIN/ingest" serve >"$AGENTOPS_RUN_DIR/gateway.log" 2>&1 & gw=$!
for _ in $(seq 1 100); do curl -fs "http://$AGENTOPS__INGEST__LISTEN/readyz" >/dev/null && break; sleep 0.1; done
export OTLP_URL="http://$AGENTOPS__INGEST__LISTEN/v1/traces" OTLP_KEY="$key" SPANS="$spans"
log "OTLP protobuf -> gateway -> Tansu ($spans spans, every span an agent invocation)"
SPANS_PER_TASK=1 cargo bench --locked -p ingest --bench otlp_load 2>/dev/null | grep '^otlp'
log "OTLP protobuf -> gateway -> Tansu ($spans spans, 1 agent + 2 chat spans per task)"
SPANS_PER_TASK=3 cargo bench --locked -p ingest --bench otlp_load 2>/dev/null | grep '^otlp'
