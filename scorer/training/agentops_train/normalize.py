"""Robust per-feature normalization and the imputation of undefined features.

z = clip((x - median) / scale, -clip, +clip), scale = IQR / 1.349 (MIN_SCALE when the IQR is 0);
fitted on training windows with tasks_total > 0 for the rate features (0..3) and on all windows
for log_tasks. An undefined feature (NaN) gets mask 0 and the value 0 (= the training median).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import config


@dataclass
class Normalizer:
    median: np.ndarray  # [F] float64
    scale: np.ndarray  # [F] float64
    clip: float = config.CLIP

    @staticmethod
    def fit(x: np.ndarray, min_scale: float = config.MIN_SCALE) -> "Normalizer":
        """`x`: [..., F] raw features, NaN where undefined (undefined windows are left out of the
        rate features' statistics; log_tasks is defined everywhere)."""
        flat = x.reshape(-1, x.shape[-1])
        med, scale = [], []
        for f in range(flat.shape[1]):
            col = flat[:, f]
            col = col[~np.isnan(col)]
            q25, q50, q75 = np.percentile(col, [25, 50, 75])
            s = (q75 - q25) / 1.349
            med.append(float(q50))
            scale.append(float(s) if s > 0 else min_scale)
        return Normalizer(np.array(med), np.array(scale))

    def transform(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw features [..., F] (NaN = undefined) -> (normalized float32, mask float32)."""
        mask = ~np.isnan(x)
        z = np.clip((x - self.median) / self.scale, -self.clip, self.clip)
        z = np.where(mask, z, 0.0)
        return z.astype(np.float32), mask.astype(np.float32)

    def to_json(self) -> dict:
        return {
            "median": [float(v) for v in self.median],
            "scale": [float(v) for v in self.scale],
            "clip": float(self.clip),
        }

    @staticmethod
    def from_json(d: dict) -> "Normalizer":
        return Normalizer(np.array(d["median"], dtype=np.float64), np.array(d["scale"], dtype=np.float64), float(d["clip"]))
