#!/usr/bin/env bash
# The run command (README): installs what is missing, starts the local broker, prepares topics
# and the store, and runs what exists of the pipeline so far. `scripts/run.sh stop` stops
# everything it started. Safe to run twice.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
if [ "${1:-}" = "stop" ]; then
  "$REPO_ROOT/scripts/tansu.sh" stop
  exit 0
fi
"$REPO_ROOT/scripts/install-deps.sh"
log "building (release)"
cargo build --release --locked --bins
export AGENTOPS__KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT"
"$REPO_ROOT/scripts/tansu.sh" start memory
BIN="$REPO_ROOT/target/release"
log "creating topics"
"$BIN/ingest" topics
log "applying store migrations (${AGENTOPS__STORE__URL:-sqlite://data/agentops.db})"
"$BIN/aggregator" migrate
log "publishing example task events"
"$BIN/ingest" publish-example --count 1000
log "the broker keeps running; stop it with: scripts/run.sh stop"
