#!/usr/bin/env bash
# Installs the Tansu broker (Kafka-protocol compatible) from crates.io into the cache, once.
# Features: dynostore (memory:// engine, fast, for tests) and libsql (sqlite:// engine, durable,
# for broker-restart tests). A second run finds the binary and does nothing.
source "$(dirname "$0")/lib.sh"
if [ -x "$TANSU_BIN" ] && "$TANSU_BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  log "tansu $TANSU_VERSION already installed at $TANSU_BIN"
  exit 0
fi
log "building tansu $TANSU_VERSION with features $TANSU_FEATURES (about 20 minutes on 2 cores, once)"
mkdir -p "$TANSU_ROOT"
CARGO_TARGET_DIR="$AGENTOPS_CACHE/tansu-build" \
  cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" --root "$TANSU_ROOT"
rm -rf "$AGENTOPS_CACHE/tansu-build"
log "tansu installed at $TANSU_BIN"
