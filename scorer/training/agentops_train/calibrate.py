"""Scores of whole data sets with the exported models, the per-model calibration (on validation
normal windows) and the choice of ensemble weights and thresholds (on the labelled tuning set)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import config
from .data import Dataset, gather, sequence_index
from .evaluate import SeriesScores, best_threshold
from .normalize import Normalizer
from .scoring import Calibration, OnnxModel, feature_errors, raw_score

# thresholds tried on the tuning set (normalized scale: robust z of the log error)
THRESHOLD_GRID = np.round(np.arange(0.0, 40.0 + 1e-9, 0.05), 4)
# w_lstm; w_transformer = 1 - w_lstm
WEIGHT_GRID = np.round(np.arange(0.1, 0.91, 0.1), 2)


@dataclass
class DatasetErrors:
    """Per-feature errors e_f of both models for every scorable window of a data set."""

    dataset: Dataset
    index: np.ndarray  # [N, 2] series, end slot
    e_lstm: np.ndarray  # [N, F]
    e_tr: np.ndarray  # [N, F]


def dataset_errors(ds: Dataset, norm: Normalizer, lstm: OnnxModel, tr: OnnxModel) -> DatasetErrors:
    z, m = norm.transform(ds.x)
    idx = sequence_index(len(ds.series), ds.windows.n_slots)
    zs, ms = gather(z, idx), gather(m, idx)
    e_l = feature_errors(zs, ms, lstm.reconstruct(zs))
    e_t = feature_errors(zs, ms, tr.reconstruct(zs))
    return DatasetErrors(ds, idx, e_l, e_t)


def series_scores(de: DatasetErrors, score: np.ndarray) -> list[SeriesScores]:
    """Per-window scores [N] (aligned with de.index) -> one SeriesScores per series."""
    ds = de.dataset
    S, T = len(ds.series), ds.windows.n_slots
    grid = np.full((S, T), np.nan)
    grid[de.index[:, 0], de.index[:, 1]] = score
    starts = ds.windows.window_starts()
    return [
        SeriesScores(ds.name, s, starts, grid[i], ds.incidents_of(s), s in ds.control)
        for i, s in enumerate(ds.series)
    ]


@dataclass
class ScoreSet:
    """Raw and calibrated scores of several data sets."""

    errors: list[DatasetErrors]
    cal_lstm: Calibration
    cal_tr: Calibration

    def n_lstm(self, de: DatasetErrors) -> np.ndarray:
        return self.cal_lstm.apply(raw_score(de.e_lstm))

    def n_tr(self, de: DatasetErrors) -> np.ndarray:
        return self.cal_tr.apply(raw_score(de.e_tr))

    def items(self, which: str, w_lstm: float = 0.5, w_tr: float = 0.5) -> list[SeriesScores]:
        out = []
        for de in self.errors:
            if which == "lstm":
                s = self.n_lstm(de)
            elif which == "transformer":
                s = self.n_tr(de)
            else:
                s = (w_lstm * self.n_lstm(de) + w_tr * self.n_tr(de)) / (w_lstm + w_tr)
            out.extend(series_scores(de, s))
        return out


def fit_calibrations(val: list[DatasetErrors]) -> tuple[Calibration, Calibration]:
    return (
        Calibration.fit(np.concatenate([raw_score(d.e_lstm) for d in val])),
        Calibration.fit(np.concatenate([raw_score(d.e_tr) for d in val])),
    )


def tune(tuning: ScoreSet, log=print) -> dict:
    """Per-model thresholds and the ensemble's weights + threshold, by best event-level F1."""
    out = {}
    for which in ("lstm", "transformer"):
        th, f1 = best_threshold(tuning.items(which), THRESHOLD_GRID)
        out[which] = {"threshold": th, "f1": f1}
        log(f"  tuning {which}: threshold {th:.2f} F1 {f1:.3f}")
    best = (-1.0, 0.5, 0.0)
    table = []
    for wl in WEIGHT_GRID:
        th, f1 = best_threshold(tuning.items("ensemble", wl, 1 - wl), THRESHOLD_GRID)
        table.append({"w_lstm": float(wl), "threshold": th, "f1": f1})
        log(f"  tuning ensemble w_lstm {wl:.1f}: threshold {th:.2f} F1 {f1:.3f}")
        # strictly better only: among equal F1 the first (smallest w_lstm) wins; ties are rare
        if f1 > best[0] + 1e-12:
            best = (f1, float(wl), th)
    out["ensemble"] = {
        "weights": {"lstm": round(best[1], 2), "transformer": round(1 - best[1], 2)},
        "threshold": best[2],
        "f1": best[0],
        "grid": table,
    }
    return out
