# Shared settings for the project's scripts. Source it; do not run it.
# Everything the scripts install lives under $AGENTOPS_CACHE so that a second run (and a CI run
# on the same machine) reuses it instead of rebuilding.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AGENTOPS_CACHE="${AGENTOPS_CACHE:-$HOME/.cache/agentops}"
TANSU_VERSION="0.6.0"
TANSU_FEATURES="dynostore,libsql"
TANSU_ROOT="$AGENTOPS_CACHE/tansu-$TANSU_VERSION-${TANSU_FEATURES//,/-}"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
ORT_VERSION="1.32.0"
ORT_DIR="$AGENTOPS_CACHE/onnxruntime-$ORT_VERSION"
# The OpenTelemetry Python SDK + OTLP/HTTP exporter (scripts/install-otel-python.sh).
OTEL_VENV="$AGENTOPS_CACHE/venv-otel"
# numpy, pytest, onnxruntime for the training package's tests (scripts/install-training-python.sh).
TRAIN_TEST_VENV="$AGENTOPS_CACHE/venv-train-tests"
# playwright-core from npm for the dashboard's browser test (scripts/install-playwright.sh).
PLAYWRIGHT_VERSION="1.57.0"
PLAYWRIGHT_DIR="$AGENTOPS_CACHE/playwright-core-$PLAYWRIGHT_VERSION"
CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
RUN_DIR="${AGENTOPS_RUN_DIR:-$REPO_ROOT/.run}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
export AGENTOPS_CACHE
export PLAYWRIGHT_DIR CHROMIUM_BIN
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
