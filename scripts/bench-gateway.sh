#!/usr/bin/env bash
# Gateway throughput: the workload generator posts batches of 500 events to `ingest serve`,
# which answers only after Tansu (memory engine) acknowledged them; everything on this machine.
# Also measures the generator writing files. Not part of CI (heavy); numbers go to README.md.
#   scripts/bench-gateway.sh [days]      (default 4 simulated days, about 190k events)
export KAFKA_PORT="${BENCH_KAFKA_PORT:-19092}"
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
days="${1:-4}"
export AGENTOPS_RUN_DIR="$REPO_ROOT/.run/bench"
export AGENTOPS__KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT"
export AGENTOPS__KAFKA__TOPICS__TASK_EVENTS="bench-events-$$"
export AGENTOPS__KAFKA__PARTITIONS=4
export AGENTOPS__STORE__URL="sqlite://$AGENTOPS_RUN_DIR/bench.db"
export AGENTOPS__INGEST__LISTEN="127.0.0.1:18080"
export AGENTOPS__INGEST__MAX_BATCH_EVENTS=500
cargo build --release --locked -p ingest
BIN="$REPO_ROOT/target/release"
out="$AGENTOPS_RUN_DIR/out"; rm -rf "$AGENTOPS_RUN_DIR"; mkdir -p "$out"

log "generator -> files (30 simulated days, no truth)"
"$BIN/ingest" gen --out "$out/files" --days 30 --no-truth 2>/dev/null | tail -1
log "generator -> files (30 simulated days, with ground truth)"
"$BIN/ingest" gen --out "$out/files" --days 30 2>/dev/null | tail -1
rm -rf "$out/files"

"$REPO_ROOT/scripts/tansu.sh" start memory
trap '"$REPO_ROOT/scripts/tansu.sh" stop; [ -n "${gw:-}" ] && kill "$gw" 2>/dev/null || true' EXIT
"$BIN/ingest" topics >/dev/null
"$BIN/ingest" serve >"$AGENTOPS_RUN_DIR/gateway.log" 2>&1 & gw=$!
for _ in $(seq 1 100); do curl -fs "http://$AGENTOPS__INGEST__LISTEN/readyz" >/dev/null && break; sleep 0.1; done
log "generator -> gateway -> Tansu ($days simulated days, batches of 500)"
# --max-skew-secs 0: requests may reorder simulated time freely (throughput only; an aggregator
# reading this would divert reordered events as late).
"$BIN/ingest" gen --to http --out "$out/http" --days "$days" --batch 500 --in-flight "${IN_FLIGHT:-8}" --max-skew-secs 0 --no-truth --malformed-rate 0 2>/dev/null | grep gateway
