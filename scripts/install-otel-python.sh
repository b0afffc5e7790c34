#!/usr/bin/env bash
# A venv with the official OpenTelemetry Python SDK and its OTLP/HTTP (protobuf) exporter, the
# real client that integration-tests/tests/otlp.rs exports agent spans with. Cached under
# $AGENTOPS_CACHE/venv-otel; recreated only when the pinned versions change. Prints nothing else.
source "$(dirname "$0")/lib.sh"
VENV="$OTEL_VENV"
PY_REQUIREMENTS=(opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2)
stamp="$VENV/.requirements"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PY_REQUIREMENTS[*]}" ]; then
  exit 0
fi
log "creating $VENV (${PY_REQUIREMENTS[*]})"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
echo "${PY_REQUIREMENTS[*]}" >"$stamp"
