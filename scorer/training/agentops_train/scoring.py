"""The scoring contract, exactly as the Rust scorer implements it.

For a sequence of the L windows of a series ending at the scored window (normalized input `z`,
mask `m`, reconstruction `r`, all [N, L, F]):

  e_f   = sum_{last P positions} m (z - r)^2 / max(1, sum_{last P positions} m)
  raw   = mean_f e_f                       (an all-undefined feature contributes 0, still counts)
  n     = (ln(raw + eps) - loc) / scale    (per model; loc, scale from validation normal windows)
  ens   = (w_lstm n_lstm + w_tr n_tr) / (w_lstm + w_tr);   anomaly when ens >= threshold
  c_f   = (w_lstm e_f^lstm / sum_g e_g^lstm + w_tr e_f^tr / sum_g e_g^tr) / (w_lstm + w_tr)
          (a model whose error sum is 0 contributes 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config


def feature_errors(z: np.ndarray, mask: np.ndarray, recon: np.ndarray,
                   positions: int = config.SCORE_POSITIONS) -> np.ndarray:
    """e_f per sequence: [N, F] float64."""
    zz = z[:, -positions:, :].astype(np.float64)
    rr = recon[:, -positions:, :].astype(np.float64)
    mm = mask[:, -positions:, :].astype(np.float64)
    num = (mm * (zz - rr) ** 2).sum(axis=1)
    den = np.maximum(1.0, mm.sum(axis=1))
    return num / den


def raw_score(e: np.ndarray) -> np.ndarray:
    return e.mean(axis=-1)


@dataclass
class Calibration:
    loc: float
    scale: float
    eps: float = config.CALIBRATION_EPS

    @staticmethod
    def fit(raw: np.ndarray, eps: float = config.CALIBRATION_EPS) -> "Calibration":
        lg = np.log(raw.astype(np.float64) + eps)
        loc = float(np.median(lg))
        mad = float(np.median(np.abs(lg - loc)))
        return Calibration(loc=loc, scale=1.4826 * mad if mad > 0 else 1.0, eps=eps)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return (np.log(np.asarray(raw, dtype=np.float64) + self.eps) - self.loc) / self.scale

    def to_json(self) -> dict:
        return {"loc": self.loc, "scale": self.scale, "eps": self.eps}


def ensemble(n_lstm: np.ndarray, n_tr: np.ndarray, w_lstm: float, w_tr: float) -> np.ndarray:
    return (w_lstm * n_lstm + w_tr * n_tr) / (w_lstm + w_tr)


def _shares(e: np.ndarray) -> np.ndarray:
    s = e.sum(axis=-1, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def contributions(e_lstm: np.ndarray, e_tr: np.ndarray, w_lstm: float, w_tr: float) -> np.ndarray:
    return (w_lstm * _shares(e_lstm) + w_tr * _shares(e_tr)) / (w_lstm + w_tr)


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
