#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds once, runs every test.
# Integration tests start their own Tansu brokers (random ports) from the cached binary.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/scripts/install-deps.sh"
export TANSU_BIN ORT_DYLIB_PATH="$ORT_DIR/libonnxruntime.so"
log "building"
cargo build --workspace --all-targets --locked
log "doc tests"
cargo test --workspace --doc --locked --quiet
log "tests"
cargo nextest run --workspace --locked --no-fail-fast --failure-output final
log "helm chart (offline validation)"
"$REPO_ROOT/scripts/validate-helm.sh"
