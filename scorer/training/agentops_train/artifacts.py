"""manifest.json and reference.json (the Rust scorer's equality test)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

from . import config
from .calibrate import DatasetErrors
from .export import model_set_id, sha256
from .normalize import Normalizer
from .scoring import Calibration, OnnxModel, contributions, ensemble, feature_errors, raw_score


def build_manifest(out: Path, norm: Normalizer, cal_lstm: Calibration, cal_tr: Calibration,
                   tuned: dict, training: dict, date: str | None = None) -> dict:
    lstm_path, tr_path = out / config.LSTM_FILE, out / config.TRANSFORMER_FILE
    date = date or dt.datetime.now(dt.timezone.utc).strftime("%Y.%m.%d")
    ens = tuned["ensemble"]
    return {
        "version": f"{date}-{model_set_id([lstm_path, tr_path])}",
        "window_secs": config.WINDOW_SECS,
        "sequence_length": config.SEQUENCE_LENGTH,
        "score_positions": config.SCORE_POSITIONS,
        "features": list(config.FEATURES),
        "normalization": norm.to_json(),
        "models": {
            "lstm": {
                "file": config.LSTM_FILE,
                "sha256": sha256(lstm_path),
                "input": config.INPUT_NAME,
                "output": config.OUTPUT_NAME,
                "calibration": cal_lstm.to_json(),
                "threshold_alone": tuned["lstm"]["threshold"],
            },
            "transformer": {
                "file": config.TRANSFORMER_FILE,
                "sha256": sha256(tr_path),
                "input": config.INPUT_NAME,
                "output": config.OUTPUT_NAME,
                "calibration": cal_tr.to_json(),
                "threshold_alone": tuned["transformer"]["threshold"],
            },
        },
        "ensemble": {"weights": dict(ens["weights"]), "threshold": ens["threshold"]},
        "training": training,
    }


def _nullable(row: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in row]


def score_case(raw: np.ndarray, manifest: dict, lstm: OnnxModel, tr: OnnxModel) -> dict:
    """Everything the Rust scorer computes for one sequence of raw features [L, F] (NaN = undefined)."""
    norm = Normalizer.from_json(manifest["normalization"])
    z, m = norm.transform(raw[None])
    e_l = feature_errors(z, m, lstm.reconstruct(z))
    e_t = feature_errors(z, m, tr.reconstruct(z))
    mods = manifest["models"]
    cl = Calibration(**mods["lstm"]["calibration"])
    ct = Calibration(**mods["transformer"]["calibration"])
    wl = manifest["ensemble"]["weights"]["lstm"]
    wt = manifest["ensemble"]["weights"]["transformer"]
    rl, rt = raw_score(e_l), raw_score(e_t)
    nl, nt = cl.apply(rl), ct.apply(rt)
    ens = ensemble(nl, nt, wl, wt)
    return {
        "raw_features": [_nullable(r) for r in raw],
        "lstm_raw": float(rl[0]),
        "transformer_raw": float(rt[0]),
        "lstm_normalized": float(nl[0]),
        "transformer_normalized": float(nt[0]),
        "ensemble": float(ens[0]),
        "is_anomaly": bool(ens[0] >= manifest["ensemble"]["threshold"]),
        "contributions": [float(v) for v in contributions(e_l, e_t, wl, wt)[0]],
        # for debugging a mismatch step by step
        "normalized_input": [[float(v) for v in r] for r in z[0]],
        "mask": [[int(v) for v in r] for r in m[0]],
        "lstm_feature_errors": [float(v) for v in e_l[0]],
        "transformer_feature_errors": [float(v) for v in e_t[0]],
    }


def pick_reference_windows(de: DatasetErrors, manifest: dict) -> list[tuple[str, int, int, np.ndarray | None]]:
    """(label, series index, end slot, override raw features) of the reference cases."""
    ds = de.dataset
    L = config.SEQUENCE_LENGTH
    mods = manifest["models"]
    cl, ct = Calibration(**mods["lstm"]["calibration"]), Calibration(**mods["transformer"]["calibration"])
    w = manifest["ensemble"]["weights"]
    ens = ensemble(cl.apply(raw_score(de.e_lstm)), ct.apply(raw_score(de.e_tr)), w["lstm"], w["transformer"])
    starts = ds.windows.window_starts()
    tasks = ds.windows.counts["tasks_total"]
    cases = []
    control = [i for i, s in enumerate(ds.series) if s in ds.control]
    c0 = control[0]
    rows = np.nonzero(de.index[:, 0] == c0)[0]
    med = rows[np.argsort(ens[rows])[len(rows) // 2]]
    cases.append(("normal: control series, median score", c0, int(de.index[med, 1]), None))
    c1 = control[1]
    rows = np.nonzero(de.index[:, 0] == c1)[0]
    quiet = rows[np.argmin(tasks[c1, de.index[rows, 1]])]
    cases.append(("normal: control series, quietest window", c1, int(de.index[quiet, 1]), None))
    seen_kinds = set()
    for inc in sorted(ds.incidents, key=lambda i: (i["kind"], i["tenant_id"], i["agent_id"])):
        if inc["kind"] in seen_kinds:
            continue
        seen_kinds.add(inc["kind"])
        s = ds.series.index((inc["tenant_id"], inc["agent_id"]))
        inside = (de.index[:, 0] == s) & (starts[de.index[:, 1]] < inc["end_ms"]) & (
            starts[de.index[:, 1]] + ds.windows.window_ms > inc["start_ms"])
        rows = np.nonzero(inside)[0]
        best = rows[np.argmax(ens[rows])]
        cases.append((f"incident: {inc['kind']}, highest score", s, int(de.index[best, 1]), None))
    # a normal sequence whose scored positions are all empty windows (an outage in the making)
    raw = ds.x[c0, int(de.index[med, 1]) - L + 1:int(de.index[med, 1]) + 1].copy()
    raw[-config.SCORE_POSITIONS:, :config.RATE_FEATURES] = np.nan
    raw[-config.SCORE_POSITIONS:, config.RATE_FEATURES] = 0.0
    cases.append(("synthetic: control series with its last 4 windows empty", c0, int(de.index[med, 1]), raw))
    return cases


def build_reference(de: DatasetErrors, manifest: dict, lstm: OnnxModel, tr: OnnxModel) -> dict:
    ds = de.dataset
    L = config.SEQUENCE_LENGTH
    starts = ds.windows.window_starts()
    out = []
    for label, s, t, override in pick_reference_windows(de, manifest):
        raw = override if override is not None else ds.x[s, t - L + 1:t + 1]
        case = {
            "name": label,
            "series": "/".join(ds.series[s]),
            "dataset": ds.name,
            "window_start": int(starts[t]),
        }
        case.update(score_case(raw, manifest, lstm, tr))
        out.append(case)
    return {
        "model_version": manifest["version"],
        "tolerance": 1e-4,
        "note": "raw_features are un-normalized feature values (null = undefined); the expected numbers come "
                "from onnxruntime on the committed ONNX files with manifest.json's normalization, calibration "
                "and ensemble",
        "cases": out,
    }


def write_json(path: Path, obj: dict) -> None:
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")
