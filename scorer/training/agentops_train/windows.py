"""events.jsonl -> KPI windows, with the aggregator's semantics (the Rust scorer reads them as windows.csv).

- a line that does not parse, or an event that fails the checks of `schemas::validate`
  (empty ids, negative numbers, `completed_at < started_at`, unknown status...) is skipped;
- duplicates (same `event_id`) are dropped: the first valid occurrence counts;
- tumbling event-time windows by `completed_at`: start = floor(ts / W) * W;
- latency = completed_at - started_at; P50/P95/P99 are exact nearest-rank quantiles (the value at
  rank ceil(q * n) of the sorted latencies); None (NaN here) in an empty window;
- every series has a window for every slot of the period; slots without tasks are empty windows
  (tasks_total = 0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import config

try:  # orjson is 5x faster on 1.5 M lines; the standard library works too
    import orjson

    _loads = orjson.loads
    _DecodeError: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover
    _loads = json.loads
    _DecodeError = (ValueError,)

STATUSES = {"SUCCEEDED": 0, "FAILED": 1, "CANCELLED": 2}
MAX_ID_BYTES = 128
I32_MAX = 2**31 - 1
I64_MAX = 2**63 - 1
DAY_MS = 86_400_000


def _is_int(v: object, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _id_ok(v: object) -> bool:
    return isinstance(v, str) and bool(v.strip()) and len(v.encode()) <= MAX_ID_BYTES


def validate(e: object) -> bool:
    """Mirror of serde decoding + `schemas::validation::validate` for one decoded JSON value."""
    if not isinstance(e, dict):
        return False
    for key in ("event_id", "task_id", "tenant_id", "agent_id"):
        if not _id_ok(e.get(key)):
            return False
    tenant, agent = e["tenant_id"], e["agent_id"]
    if "/" in tenant or "/" in agent or agent == "*":
        return False
    if e.get("status") not in STATUSES:
        return False
    if not _is_int(e.get("human_interventions"), 0, I32_MAX):
        return False
    started, completed, cost = e.get("started_at"), e.get("completed_at"), e.get("cost_micros")
    if not (_is_int(started, 0, I64_MAX) and _is_int(completed, 0, I64_MAX)):
        return False
    if completed < started:
        return False
    if not _is_int(cost, 0, I64_MAX):
        return False
    for key in ("input_tokens", "output_tokens"):
        v = e.get(key)
        if v is not None and not _is_int(v, 0, I64_MAX):
            return False
    model = e.get("model")
    if model is not None and (not isinstance(model, str) or len(model.encode()) > MAX_ID_BYTES):
        return False
    attrs = e.get("attributes")
    if attrs is not None:
        if not isinstance(attrs, dict) or len(attrs) > 32:
            return False
        for k, v in attrs.items():
            if not (1 <= len(k.encode()) <= 64) or not isinstance(v, str) or len(v.encode()) > 512:
                return False
    return True


@dataclass
class ParsedEvents:
    """Valid, de-duplicated events as columns."""

    series: list[tuple[str, str]]  # index -> (tenant, agent), sorted
    series_idx: np.ndarray  # int32
    completed_at: np.ndarray  # int64
    latency_ms: np.ndarray  # int64
    status: np.ndarray  # int8: 0 succeeded, 1 failed, 2 cancelled
    human_interventions: np.ndarray  # int64
    cost_micros: np.ndarray  # int64
    stats: dict = field(default_factory=dict)


def parse_lines(lines) -> ParsedEvents:
    """Parses JSON lines (bytes or str), skipping malformed/invalid ones and duplicates."""
    seen: set[str] = set()
    series_of: dict[tuple[str, str], int] = {}
    sid, comp, lat, stat, hi, cost = [], [], [], [], [], []
    n_lines = n_bad_json = n_invalid = n_dup = 0
    for line in lines:
        if not line.strip():
            continue
        n_lines += 1
        try:
            e = _loads(line)
        except _DecodeError:
            n_bad_json += 1
            continue
        if not validate(e):
            n_invalid += 1
            continue
        eid = e["event_id"]
        if eid in seen:
            n_dup += 1
            continue
        seen.add(eid)
        key = (e["tenant_id"], e["agent_id"])
        s = series_of.get(key)
        if s is None:
            s = series_of[key] = len(series_of)
        sid.append(s)
        comp.append(e["completed_at"])
        lat.append(e["completed_at"] - e["started_at"])
        stat.append(STATUSES[e["status"]])
        hi.append(e["human_interventions"])
        cost.append(e["cost_micros"])
    # series sorted by (tenant, agent): a stable order independent of the file order
    names = sorted(series_of)
    remap = np.zeros(max(len(names), 1), dtype=np.int32)
    for new, key in enumerate(names):
        remap[series_of[key]] = new
    sid_arr = remap[np.asarray(sid, dtype=np.int32)] if sid else np.zeros(0, dtype=np.int32)
    return ParsedEvents(
        series=names,
        series_idx=sid_arr,
        completed_at=np.asarray(comp, dtype=np.int64),
        latency_ms=np.asarray(lat, dtype=np.int64),
        status=np.asarray(stat, dtype=np.int8),
        human_interventions=np.asarray(hi, dtype=np.int64),
        cost_micros=np.asarray(cost, dtype=np.int64),
        stats={
            "lines": n_lines,
            "unparsable": n_bad_json,
            "invalid": n_invalid,
            "duplicates": n_dup,
            "events": len(sid),
        },
    )


def parse_events_file(path: Path) -> ParsedEvents:
    with open(path, "rb") as f:
        return parse_lines(f)


COUNT_FIELDS = [
    "tasks_total",
    "succeeded",
    "failed",
    "cancelled",
    "tasks_with_intervention",
    "interventions",
    "cost_micros",
]
QUANTILES = {"latency_p50_ms": 0.50, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


@dataclass
class Windows:
    """KpiWindow fields of every series x slot: counts [S, T] int64, quantiles [S, T] float64
    (NaN when the window is empty)."""

    series: list[tuple[str, str]]
    start_ms: int  # start of slot 0
    window_ms: int
    counts: dict[str, np.ndarray]
    quantiles: dict[str, np.ndarray]

    @property
    def n_slots(self) -> int:
        return int(self.counts["tasks_total"].shape[1])

    def window_starts(self) -> np.ndarray:
        return self.start_ms + self.window_ms * np.arange(self.n_slots, dtype=np.int64)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            series=np.array(["\x1f".join(s) for s in self.series]),
            start_ms=self.start_ms,
            window_ms=self.window_ms,
            **{f"c_{k}": v for k, v in self.counts.items()},
            **{f"q_{k}": v for k, v in self.quantiles.items()},
        )

    def write_csv(self, path: Path) -> None:
        """The windows as the Rust scorer's offline input (`scorer offline`, `scorer features`,
        `scorer evaluate`): one row per series and slot, KpiWindow field names, epoch ms, an
        empty latency cell in an empty window."""
        starts = self.window_starts()
        c, q = self.counts, self.quantiles
        cols = ["tasks_total", "succeeded", "tasks_with_intervention", "cost_micros"]
        with open(path, "w") as f:
            f.write("tenant_id,agent_id,window_start," + ",".join(cols) + ",latency_p50_ms,latency_p95_ms\n")
            for i, (tenant, agent) in enumerate(self.series):
                ints = np.stack([c[k][i] for k in cols], axis=1)
                p50, p95 = q["latency_p50_ms"][i], q["latency_p95_ms"][i]
                lines = []
                for t in range(len(starts)):
                    lat = "," if math.isnan(p50[t]) else f"{float(p50[t])!r},{float(p95[t])!r}"
                    lines.append(f"{tenant},{agent},{int(starts[t])},"
                                 + ",".join(str(int(v)) for v in ints[t]) + "," + lat)
                f.write("\n".join(lines) + "\n")

    @staticmethod
    def load(path: Path) -> "Windows":
        z = np.load(path)
        return Windows(
            series=[tuple(s.split("\x1f")) for s in z["series"].tolist()],
            start_ms=int(z["start_ms"]),
            window_ms=int(z["window_ms"]),
            counts={k: z[f"c_{k}"] for k in COUNT_FIELDS},
            quantiles={k: z[f"q_{k}"] for k in QUANTILES},
        )


def nearest_rank(sorted_values: np.ndarray, q: float) -> float | None:
    """Exact nearest-rank quantile of sorted values (the Rust `exact_quantile`)."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = min(max(math.ceil(q * n), 1), n)
    return float(sorted_values[rank - 1])


def aggregate(
    ev: ParsedEvents,
    window_ms: int = config.WINDOW_MS,
    period: tuple[int, int] | None = None,
) -> Windows:
    """Tumbling windows of every series over `period` = [start_ms, end_ms) (default: the slots
    from the first to the last event). Events outside the period are not counted."""
    S = len(ev.series)
    slot_abs = np.floor_divide(ev.completed_at, window_ms)
    if period is None:
        if len(slot_abs) == 0:
            raise ValueError("no valid events and no period")
        first, last = int(slot_abs.min()), int(slot_abs.max())
    else:
        first = period[0] // window_ms
        last = (period[1] - 1) // window_ms
    T = last - first + 1
    slot = slot_abs - first
    keep = (slot >= 0) & (slot < T)
    key = ev.series_idx[keep].astype(np.int64) * T + slot[keep]
    st = ev.status[keep]
    size = S * T

    def count(weights: np.ndarray | None = None) -> np.ndarray:
        out = np.bincount(key, weights=weights, minlength=size)
        return np.rint(out).astype(np.int64).reshape(S, T)

    hi = ev.human_interventions[keep]
    counts = {
        "tasks_total": count(),
        "succeeded": count((st == 0).astype(np.float64)),
        "failed": count((st == 1).astype(np.float64)),
        "cancelled": count((st == 2).astype(np.float64)),
        "tasks_with_intervention": count((hi > 0).astype(np.float64)),
        "interventions": count(hi.astype(np.float64)),
        "cost_micros": count(ev.cost_micros[keep].astype(np.float64)),
    }
    # exact nearest-rank quantiles: sort by (window, latency), pick rank ceil(q n) in each window
    lat = ev.latency_ms[keep]
    order = np.lexsort((lat, key))
    lat_sorted = lat[order].astype(np.float64)
    n = counts["tasks_total"].reshape(-1)
    begin = np.concatenate([[0], np.cumsum(n)[:-1]])
    nonempty = n > 0
    quantiles = {}
    for name, q in QUANTILES.items():
        out = np.full(size, np.nan)
        rank = np.clip(np.ceil(q * n[nonempty].astype(np.float64)).astype(np.int64), 1, None)
        out[nonempty] = lat_sorted[begin[nonempty] + rank - 1]
        quantiles[name] = out.reshape(S, T)
    return Windows(
        series=list(ev.series),
        start_ms=first * window_ms,
        window_ms=window_ms,
        counts=counts,
        quantiles=quantiles,
    )


def dataset_period(dataset_dir: Path) -> tuple[int, int] | None:
    """[start, end) of the generated period, from the generator's manifest.json when present."""
    m = Path(dataset_dir) / "manifest.json"
    if not m.exists():
        return None
    g = json.loads(m.read_text())["generator"]
    start = int(g["start_ms"])
    return start, start + int(g["days"]) * DAY_MS
