#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library from the PyPI `onnxruntime` wheel (for ort's
# load-dynamic) into the cache, once. Prints nothing else; the path is $ORT_DIR/libonnxruntime.so.
source "$(dirname "$0")/lib.sh"
if [ -f "$ORT_DIR/libonnxruntime.so" ]; then
  exit 0
fi
log "fetching onnxruntime $ORT_VERSION from PyPI"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "onnxruntime==$ORT_VERSION"
mkdir -p "$ORT_DIR"
python3 - "$tmp" "$ORT_DIR" <<'PY'
import glob, os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(src, "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime.so"):
            with z.open(name) as f, open(os.path.join(dst, base), "wb") as out:
                out.write(f.read())
PY
lib="$(ls "$ORT_DIR"/libonnxruntime.so.* | head -n 1)"
ln -sf "$(basename "$lib")" "$ORT_DIR/libonnxruntime.so"
log "onnxruntime at $ORT_DIR/libonnxruntime.so"
