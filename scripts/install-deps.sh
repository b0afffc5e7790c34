#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh machine; idempotent and cached.
#   - Debian packages for rdkafka's bundled librdkafka build (cmake, curl, ssl, sasl, zlib, zstd)
#   - the Tansu broker (scripts/install-tansu.sh, built once into $AGENTOPS_CACHE)
#   - the ONNX Runtime shared library (scripts/install-onnxruntime.sh)
#   - the OpenTelemetry Python SDK and OTLP/HTTP exporter in a venv (scripts/install-otel-python.sh)
#   - numpy, pytest, onnxruntime in a venv for the training package's tests (scripts/install-training-python.sh)
#   - Debian's chromium and playwright-core from npm for the dashboard's browser test
#     (scripts/install-playwright.sh)
#   - cargo-nextest (the test runner), if missing
source "$(dirname "$0")/lib.sh"

# prometheus-alertmanager, prometheus (promtool and the server): the alerter tests run a real
# Alertmanager, the rules test checks the pipeline's alert rules, prometheus_scrape runs a real
# Prometheus against every service. chromium: the dashboard's browser test.
DEB_PACKAGES=(cmake pkg-config libssl-dev libsasl2-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev python3-venv
  prometheus-alertmanager prometheus chromium)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

"$REPO_ROOT/scripts/install-tansu.sh"
"$REPO_ROOT/scripts/install-onnxruntime.sh"
"$REPO_ROOT/scripts/install-otel-python.sh"
"$REPO_ROOT/scripts/install-training-python.sh"
"$REPO_ROOT/scripts/install-playwright.sh"

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
