"""The Rust scorer as the one implementation of the features, the tuning and the evaluation.

The training package generates data and trains the autoencoders; everything the service
computes (the detector's evidence = the models' input, calibration, ensemble weights,
thresholds, the evaluation protocol) comes from the `scorer` binary, so training, tuning and
the service cannot disagree."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import repo_root


def scorer_binary(explicit: str | None = None) -> Path:
    for cand in (explicit, os.environ.get("AGENTOPS_SCORER"), repo_root() / "target/release/scorer"):
        if cand and Path(cand).exists():
            return Path(cand)
    raise FileNotFoundError(
        "scorer binary not found: build it (cargo build --release -p scorer) or pass --scorer / AGENTOPS_SCORER"
    )


def onnxruntime_library() -> str | None:
    """The ONNX Runtime library of the installed onnxruntime wheel (what `ort` loads)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    libs = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so*"))
    return str(libs[0]) if libs else None


def run(scorer: Path, args: list[str], log=print) -> str:
    cmd = [str(scorer), *args]
    log("  $ " + " ".join(cmd))
    env = dict(os.environ)
    if "ORT_DYLIB_PATH" not in env and (lib := onnxruntime_library()):
        env["ORT_DYLIB_PATH"] = lib
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return done.stdout


@dataclass
class Evidence:
    """The model input of every window of a data set: z [S, T, F] and mask [S, T, F] float32,
    the per-feature CUSUM, tasks and warm flags [S, T], the series and the detector parameters
    that produced them."""

    z: np.ndarray
    mask: np.ndarray
    cusum: np.ndarray  # [S, T, F]: the statistical member's evidence per feature
    tasks: np.ndarray
    warm: np.ndarray  # [S, T] bool: the series may alarm
    series: list[tuple[str, str]]
    detector: dict
    features: list[str]


def evidence(scorer: Path, dataset: Path, detector: Path | None = None, log=print) -> Evidence:
    out = Path(dataset) / "evidence"
    cached = out / "features.json"
    # Cached per data set; computed again when the scorer binary (the detector) is newer or other
    # detector parameters are asked for.
    stale = not cached.exists() or cached.stat().st_mtime < Path(scorer).stat().st_mtime
    if not stale and detector is not None:
        stale = json.loads(cached.read_text())["detector"] != json.loads(Path(detector).read_text())
    if stale:
        args = ["features", "--windows", str(Path(dataset) / "windows.csv"), "--out", str(out)]
        if detector is not None:
            args += ["--detector", str(detector)]
        run(scorer, args, log)
    meta = json.loads((out / "features.json").read_text())
    s, t, f = meta["shape"]
    load = lambda name, shape: np.fromfile(out / name, dtype="<f4").reshape(shape)  # noqa: E731
    return Evidence(
        z=load("features.f32", (s, t, f)),
        mask=load("mask.f32", (s, t, f)),
        cusum=load("cusum.f32", (s, t, f)),
        tasks=load("tasks.f32", (s, t)),
        warm=load("warm.f32", (s, t)) > 0.5,
        series=[tuple(x) for x in meta["series"]],
        detector=meta["detector"],
        features=meta["features"],
    )
