"""The scoring contract as the Rust scorer implements it, for the reference cases only (the
Rust `scorer` computes features, calibration, tuning and evaluation; see evidence.py).

For a sequence of the L windows of a series ending at the scored window (input `z`, mask `m`,
reconstruction `r`, all [N, L, F]):

  e_f   = sum_{last P positions} m (z - r)^2 / max(1, sum_{last P positions} m)
  raw   = mean_f e_f                       (an all-undefined feature contributes 0, still counts)
  n     = (ln(raw + eps) - loc) / scale    (per autoencoder)
  ens   = (w_lstm n_lstm + w_tr n_tr + w_stat s) / (w_lstm + w_tr + w_stat)   (s: the detector's
          statistical score); anomaly when ens >= threshold and the series is warm
  c_f   = weighted mean over the members of f's share of the member's error (or evidence)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import config


def feature_errors(z: np.ndarray, mask: np.ndarray, recon: np.ndarray,
                   positions: int = config.SCORE_POSITIONS) -> np.ndarray:
    """e_f per sequence: [N, F] float64; NaN where no scored position defines the feature."""
    zz = z[:, -positions:, :].astype(np.float64)
    rr = recon[:, -positions:, :].astype(np.float64)
    mm = mask[:, -positions:, :].astype(np.float64)
    num = (mm * (zz - rr) ** 2).sum(axis=1)
    den = mm.sum(axis=1)
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def raw_score(e: np.ndarray) -> np.ndarray:
    """Mean over the defined (non-NaN) features; 0 where none is."""
    defined = ~np.isnan(e)
    n = defined.sum(axis=-1)
    total = np.where(defined, e, 0.0).sum(axis=-1)
    return np.divide(total, n, out=np.zeros_like(total, dtype=np.float64), where=n > 0)


def calibrate(raw: np.ndarray, cal: dict) -> np.ndarray:
    return (np.log(np.asarray(raw, dtype=np.float64) + cal["eps"]) - cal["loc"]) / cal["scale"]


def _shares(e: np.ndarray) -> np.ndarray:
    e = np.nan_to_num(np.asarray(e, dtype=np.float64), nan=0.0)
    s = e.sum(axis=-1, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def verdict(e_lstm: np.ndarray, e_tr: np.ndarray, stat_score: float, stat_evidence: np.ndarray, warm: bool,
            manifest: dict) -> dict:
    """The Rust `scoring::verdict` of one window (e_*: [F] per-feature errors)."""
    mods, ens = manifest["models"], manifest["ensemble"]
    w = ens["weights"]
    rl, rt = float(raw_score(e_lstm)), float(raw_score(e_tr))
    nl, nt = float(calibrate(rl, mods["lstm"]["calibration"])), float(calibrate(rt, mods["transformer"]["calibration"]))
    total = w["lstm"] + w["transformer"] + w["statistical"]
    score = sum(wk * v for wk, v in ((w["lstm"], nl), (w["transformer"], nt), (w["statistical"], stat_score))
                if wk > 0) / total
    contrib = (w["lstm"] * _shares(e_lstm) + w["transformer"] * _shares(e_tr)
               + w["statistical"] * _shares(np.asarray(stat_evidence, dtype=np.float64))) / total
    return {
        "lstm_raw": rl, "transformer_raw": rt, "lstm_normalized": nl, "transformer_normalized": nt,
        "statistical": float(stat_score), "ensemble": float(score),
        "is_anomaly": bool(warm and score >= ens["threshold"]),
        "contributions": [float(v) for v in contrib],
    }


class OnnxModel:
    """One exported autoencoder run by onnxruntime (what the Rust side runs)."""

    def __init__(self, path: Path, threads: int = config.THREADS):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def reconstruct(self, z: np.ndarray, batch: int = 4096) -> np.ndarray:
        out = []
        for i in range(0, len(z), batch):
            out.append(self.session.run([config.OUTPUT_NAME], {config.INPUT_NAME: z[i:i + batch].astype(np.float32)})[0])
        return np.concatenate(out) if out else np.zeros_like(z)
