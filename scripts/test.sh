#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds once, runs every test.
# Integration tests start their own Tansu brokers (random ports) from the cached binary.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/scripts/install-deps.sh"
export TANSU_BIN ORT_DYLIB_PATH="$ORT_DIR/libonnxruntime.so"
log "formatting (cargo fmt --check)"
cargo fmt --all --check
free_disk() { df -h --output=avail "$REPO_ROOT" | tail -1 | tr -d ' '; }
log "building ($(free_disk) free on disk)"
cargo build --workspace --all-targets --locked
log "built: target/ holds $(du -sh "${CARGO_TARGET_DIR:-$REPO_ROOT/target}" | cut -f1), $(free_disk) free"
log "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
log "doc tests"
cargo test --workspace --doc --locked --quiet
log "tests"
cargo nextest run --workspace --locked --no-fail-fast --failure-output final
log "helm chart (offline validation)"
"$REPO_ROOT/scripts/validate-helm.sh"
log "training package (pure-Python tests; the PyTorch ones are marked torch and need the train extra)"
"$TRAIN_TEST_VENV/bin/python" -m pytest scorer/training -q -m "not torch" -p no:cacheprovider
