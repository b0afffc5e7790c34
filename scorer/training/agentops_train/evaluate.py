"""Event-level evaluation of window scores against labelled incidents.

- a window [ws, ws + W) is flagged when its score >= threshold; only windows with L windows of
  history are scored;
- consecutive flagged windows of a series form one **alarm**; an alarm overlapping no incident
  of its series is a false positive (no point-adjustment);
- an incident is **detected** when any flagged window overlaps [start, end]; its detection delay
  is the end of the first such window minus the incident start;
- precision = alarms overlapping an incident / alarms; recall = detected incidents / incidents;
- PR-AUC (event level) = sum over a descending threshold sweep of (R_k - R_{k-1}) * P_k (average
  precision of the event-level curve); window-level average precision (label: the window
  overlaps an incident) is reported next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import config

DAY_MS = 86_400_000


@dataclass
class SeriesScores:
    """The scores of one series of one data set."""

    dataset: str
    series: tuple[str, str]
    window_starts: np.ndarray  # [T] int64
    scores: np.ndarray  # [T] float64, NaN where not scored
    incidents: list[dict]
    control: bool


def _incident_range(starts: np.ndarray, window_ms: int, inc: dict) -> tuple[int, int] | None:
    """Indices [i0, i1] of the windows overlapping [start, end]."""
    ov = np.nonzero((starts < inc["end_ms"]) & (starts + window_ms > inc["start_ms"]))[0]
    if len(ov) == 0:
        return None
    return int(ov[0]), int(ov[-1])


def sweep(items: list[SeriesScores], thresholds: np.ndarray, window_ms: int = config.WINDOW_MS) -> dict:
    """Event-level counts for every threshold at once."""
    K = len(thresholds)
    th = np.asarray(thresholds, dtype=np.float64)[:, None]
    alarms = np.zeros(K, dtype=np.int64)
    tp_alarms = np.zeros(K, dtype=np.int64)
    control_alarms = np.zeros(K, dtype=np.int64)
    control_days = 0.0
    detected, delays, kinds = [], [], []
    for it in items:
        s = np.where(np.isnan(it.scores), -np.inf, it.scores)
        f = s[None, :] >= th  # [K, T]
        prev = np.zeros_like(f)
        prev[:, 1:] = f[:, :-1]
        starts = f & ~prev
        n_runs = starts.sum(axis=1)
        alarms += n_runs
        if it.control:
            control_alarms += n_runs
            control_days += np.isfinite(s).sum() * window_ms / DAY_MS
        inc_mask = np.zeros(len(s), dtype=bool)
        for inc in it.incidents:
            r = _incident_range(it.window_starts, window_ms, inc)
            kinds.append(inc["kind"])
            if r is None:
                detected.append(np.zeros(K, dtype=bool))
                delays.append(np.full(K, np.nan))
                continue
            i0, i1 = r
            inc_mask[i0:i1 + 1] = True
            seg = f[:, i0:i1 + 1]
            hit = seg.any(axis=1)
            first = seg.argmax(axis=1) + i0
            delay = (it.window_starts[first] + window_ms - inc["start_ms"]) / 60_000.0
            detected.append(hit)
            delays.append(np.where(hit, delay, np.nan))
        if inc_mask.any():
            # runs containing at least one incident window: count distinct run ids among them
            run_id = np.cumsum(starts, axis=1)
            hits = f & inc_mask[None, :]
            rid = np.where(hits, run_id, 0)
            # distinct positive ids per row: ids are non-decreasing along the row
            nz = rid > 0
            # a new distinct id where the id differs from the last positive id before it
            last = np.maximum.accumulate(rid, axis=1)
            prev_last = np.zeros_like(last)
            prev_last[:, 1:] = last[:, :-1]
            change = nz & (rid != prev_last)
            tp_alarms += change.sum(axis=1)
    det = np.array(detected).T if detected else np.zeros((K, 0), dtype=bool)  # [K, I]
    dl = np.array(delays).T if delays else np.zeros((K, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(alarms > 0, tp_alarms / np.maximum(alarms, 1), np.nan)
        recall = det.mean(axis=1) if det.shape[1] else np.full(K, np.nan)
        f1 = np.where((precision + recall) > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.nan_to_num(f1)
    return {
        "thresholds": np.asarray(thresholds, dtype=np.float64),
        "alarms": alarms,
        "tp_alarms": tp_alarms,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "detected": det,
        "delays_min": dl,
        "kinds": kinds,
        "control_alarms": control_alarms,
        "control_series_days": control_days,
    }


def best_threshold(items: list[SeriesScores], thresholds: np.ndarray) -> tuple[float, float]:
    """The threshold with the best event-level F1 (the highest one among ties) and that F1."""
    r = sweep(items, thresholds)
    best = np.max(r["f1"])
    k = np.nonzero(r["f1"] >= best - 1e-12)[0][-1] if len(thresholds) else 0
    return float(r["thresholds"][k]), float(best)


def event_pr_auc(r: dict) -> float:
    """Average precision of the event-level curve of a sweep (thresholds in any order)."""
    order = np.argsort(-r["thresholds"])
    p, rc = r["precision"][order], r["recall"][order]
    ok = ~np.isnan(p)
    p, rc = p[ok], rc[ok]
    auc, prev_r = 0.0, 0.0
    for pk, rk in zip(p, rc):
        if rk > prev_r:
            auc += (rk - prev_r) * pk
            prev_r = rk
    return float(auc)


def window_average_precision(items: list[SeriesScores], window_ms: int = config.WINDOW_MS) -> float:
    scores, labels = [], []
    for it in items:
        ok = ~np.isnan(it.scores)
        lab = np.zeros(len(it.scores), dtype=bool)
        for inc in it.incidents:
            lab |= (it.window_starts < inc["end_ms"]) & (it.window_starts + window_ms > inc["start_ms"])
        scores.append(it.scores[ok])
        labels.append(lab[ok])
    s, y = np.concatenate(scores), np.concatenate(labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    # one point per distinct score (ties count together)
    last = np.r_[s[1:] != s[:-1], True]
    tp_k = tp[last]
    n_k = (np.arange(1, len(s) + 1))[last]
    precision = tp_k / n_k
    recall = tp_k / max(y.sum(), 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def report(items: list[SeriesScores], threshold: float, sweep_thresholds: np.ndarray) -> dict:
    """All the numbers at one threshold, plus the threshold-free PR-AUCs."""
    r = sweep(items, np.array([threshold]))
    det, dl = r["detected"][0], r["delays_min"][0]
    per_kind = {}
    for kind in sorted(set(r["kinds"])):
        sel = np.array([k == kind for k in r["kinds"]])
        d = dl[sel & det]
        per_kind[kind] = {
            "incidents": int(sel.sum()),
            "detected": int(det[sel].sum()),
            "recall": float(det[sel].mean()),
            "median_delay_min": float(np.median(d)) if len(d) else None,
        }
    full = sweep(items, sweep_thresholds)
    d = dl[det]
    return {
        "threshold": float(threshold),
        "alarms": int(r["alarms"][0]),
        "true_alarms": int(r["tp_alarms"][0]),
        "false_alarms": int(r["alarms"][0] - r["tp_alarms"][0]),
        "incidents": int(det.size),
        "detected": int(det.sum()),
        "precision": float(np.nan_to_num(r["precision"][0])),
        "recall": float(r["recall"][0]),
        "f1": float(r["f1"][0]),
        "event_pr_auc": event_pr_auc(full),
        "window_average_precision": window_average_precision(items),
        "mean_delay_min": float(np.mean(d)) if len(d) else None,
        "median_delay_min": float(np.median(d)) if len(d) else None,
        "recall_per_kind": per_kind,
        "control_false_alarms": int(r["control_alarms"][0]),
        "control_series_days": float(r["control_series_days"]),
        "control_false_alarms_per_series_day": float(r["control_alarms"][0] / max(r["control_series_days"], 1e-9)),
    }
