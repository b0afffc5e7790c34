"""manifest.json (before `scorer tune` fills in calibration, weights and threshold) and
reference.json (the Rust scorer's equality test against onnxruntime)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from . import config
from .evidence import Evidence
from .export import model_set_id, sha256
from .scoring import OnnxModel, feature_errors, verdict


def build_manifest(out: Path, detector: dict, training: dict, date: str | None = None) -> dict:
    lstm_path, tr_path = out / config.LSTM_FILE, out / config.TRANSFORMER_FILE
    date = date or dt.datetime.now(dt.timezone.utc).strftime("%Y.%m.%d")
    placeholder = {"loc": 0.0, "scale": 1.0, "eps": config.CALIBRATION_EPS}

    def entry(file: str, path: Path) -> dict:
        return {"file": file, "sha256": sha256(path), "input": config.INPUT_NAME,
                "output": config.OUTPUT_NAME, "calibration": dict(placeholder)}

    return {
        "version": f"{date}-{model_set_id([lstm_path, tr_path])}",
        "window_secs": config.WINDOW_SECS,
        "sequence_length": config.SEQUENCE_LENGTH,
        "score_positions": config.SCORE_POSITIONS,
        "features": list(config.FEATURES),
        "detector": detector,
        "models": {"lstm": entry(config.LSTM_FILE, lstm_path),
                   "transformer": entry(config.TRANSFORMER_FILE, tr_path)},
        # placeholders: `scorer tune` sets them
        "ensemble": {"weights": {"lstm": 1.0, "transformer": 1.0, "statistical": 1.0}, "threshold": 0.0},
        "training": training,
    }


def set_version(manifest: dict, out: Path, date: str | None = None) -> dict:
    """`<date>-<id>`: the id hashes the ONNX files and what turns their output into a verdict
    (detector, calibrations, ensemble), so a re-tuned set of the same models is a new version."""
    date = date or dt.datetime.now(dt.timezone.utc).strftime("%Y.%m.%d")
    models = manifest["models"]
    scoring = json.dumps({"detector": manifest["detector"], "ensemble": manifest["ensemble"],
                          "calibration": {k: v["calibration"] for k, v in models.items()}}, sort_keys=True)
    paths = [out / models["lstm"]["file"], out / models["transformer"]["file"]]
    manifest["version"] = f"{date}-{model_set_id(paths, scoring.encode())}"
    return manifest


def _rows(z: np.ndarray, m: np.ndarray) -> list[list[float | None]]:
    return [[float(v) if k else None for v, k in zip(zr, mr)] for zr, mr in zip(z, m)]


def build_reference(ev: Evidence, incidents: list[dict], starts: np.ndarray, manifest: dict,
                    lstm: OnnxModel, tr: OnnxModel) -> dict:
    """Reference cases from a labelled data set: a normal window, a quiet one, the most evident
    window of each incident kind, and a synthetic outage (the last windows empty)."""
    L, P = config.SEQUENCE_LENGTH, config.SCORE_POSITIONS
    picks: list[tuple[str, int, int, bool]] = []
    incident_series = {(i["tenant_id"], i["agent_id"]) for i in incidents}
    control = [k for k, s in enumerate(ev.series) if s not in incident_series]
    middle = len(starts) // 2
    picks.append(("normal: control series, middle of the period", control[0], middle, False))
    quiet = int(np.argmin(ev.tasks[control[1], L:])) + L
    picks.append(("normal: control series, quietest window", control[1], quiet, False))
    seen = set()
    for inc in sorted(incidents, key=lambda i: (i["kind"], i["tenant_id"], i["agent_id"])):
        if inc["kind"] in seen:
            continue
        seen.add(inc["kind"])
        s = ev.series.index((inc["tenant_id"], inc["agent_id"]))
        inside = np.nonzero((starts >= inc["start_ms"]) & (starts < inc["end_ms"]))[0]
        inside = inside[inside >= L - 1]
        best = max(inside, key=lambda t: float(ev.cusum[s, t].max()))
        picks.append((f"incident: {inc['kind']}, most evident window", s, int(best), False))
    picks.append(("synthetic: control series with its last 4 windows empty", control[0], middle, True))
    cases = []
    for name, s, t, empty in picks:
        z = ev.z[s, t - L + 1:t + 1].copy()
        m = ev.mask[s, t - L + 1:t + 1].copy()
        if empty:
            z[-P:, :5] = 0.0
            m[-P:, :5] = 0.0
        st = {"statistical": float(ev.cusum[s, t].max()), "evidence": [float(v) for v in ev.cusum[s, t]],
              "warm": bool(ev.warm[s, t])}
        e_l = feature_errors(z[None], m[None], lstm.reconstruct(z[None]))[0]
        e_t = feature_errors(z[None], m[None], tr.reconstruct(z[None]))[0]
        case = {"name": name, "series": "/".join(ev.series[s]), "window_start": int(starts[t]),
                "rows": _rows(z * m, m),
                "statistical_input": {"score": st["statistical"], "evidence": st["evidence"], "warm": st["warm"]}}
        case.update(verdict(e_l, e_t, st["statistical"], np.asarray(st["evidence"]), st["warm"], manifest))
        case["lstm_feature_errors"] = [None if np.isnan(v) else float(v) for v in e_l]
        case["transformer_feature_errors"] = [None if np.isnan(v) else float(v) for v in e_t]
        cases.append(case)
    return {
        "model_version": manifest["version"],
        "tolerance": 1e-4,
        "note": "rows are the model input (the detector's evidence, null = undefined) of the 16 windows; the "
                "statistical reading is the Rust detector's; the expected numbers come from onnxruntime on the "
                "committed ONNX files with manifest.json's calibration and ensemble",
        "cases": cases,
    }


def write_json(path: Path, obj: dict) -> None:
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")
