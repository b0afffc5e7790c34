#!/usr/bin/env bash
# The soak (not in CI): about a million events through the gateway, the aggregator and the
# scorer on a durable Tansu, with 21 SIGKILLs of the aggregator, the scorer and the broker in
# turn; the store's daily counts must equal the ground truth and every verdict be on the topic
# once (integration-tests/tests/soak.rs). Sizes: SOAK_DAYS (14), SOAK_TASKS_PER_DAY (6000 per
# series, 12 series), SOAK_FAULTS (21). Release build; about 10 minutes on 2 cores.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/scripts/install-tansu.sh"
"$REPO_ROOT/scripts/install-onnxruntime.sh"
export TANSU_BIN ORT_DYLIB_PATH="$ORT_DIR/libonnxruntime.so"
log "building (release)"
cargo build --release --locked --bins
log "soak"
cargo test --release --locked -p integration-tests --test soak -- --ignored --nocapture
