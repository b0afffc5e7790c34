#!/usr/bin/env bash
# A venv for the training package's tests that need no PyTorch (windowing, the scoring formula,
# the committed models' reference cases through ONNX Runtime): numpy, pytest, onnxruntime, the
# versions of scorer/training/pyproject.toml. Cached under $AGENTOPS_CACHE/venv-train-tests;
# recreated only when the pinned versions change. Prints nothing else.
source "$(dirname "$0")/lib.sh"
VENV="$TRAIN_TEST_VENV"
PY_REQUIREMENTS=(numpy==2.4.6 pytest==9.2.0 "onnxruntime==$ORT_VERSION")
stamp="$VENV/.requirements"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PY_REQUIREMENTS[*]}" ]; then
  exit 0
fi
log "creating $VENV (${PY_REQUIREMENTS[*]})"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
echo "${PY_REQUIREMENTS[*]}" >"$stamp"
