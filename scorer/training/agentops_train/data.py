"""Data sets: generated with the ingest binary, windowed once and cached as windows.npz."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config
from .windows import Windows, aggregate, dataset_period, parse_events_file


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for p in here.parents:
        if (p / "Cargo.toml").exists() and (p / "scorer").is_dir():
            return p
    return Path.cwd()


def ingest_binary(explicit: str | None = None) -> Path:
    for cand in (explicit, os.environ.get("AGENTOPS_INGEST"), repo_root() / "target/release/ingest"):
        if cand and Path(cand).exists():
            return Path(cand)
    raise FileNotFoundError(
        "ingest binary not found: build it (cargo build --release -p ingest) or pass --ingest / AGENTOPS_INGEST"
    )


def gen_command(ingest: Path, out: Path, seed: int, incidents: bool, days: int = config.DAYS,
                tasks_per_day: float | None = None) -> list[str]:
    cmd = [str(ingest), "gen", "--out", str(out), "--days", str(days), "--seed", str(seed), "--no-truth"]
    if not incidents:
        cmd.append("--no-incidents")
    if tasks_per_day is not None:
        cmd += ["--tasks-per-day", str(tasks_per_day)]
    return cmd


@dataclass
class Dataset:
    name: str
    seed: int
    windows: Windows
    incidents: list[dict]
    control: set[tuple[str, str]]
    path: Path

    @property
    def series(self) -> list[tuple[str, str]]:
        return self.windows.series

    def incidents_of(self, series: tuple[str, str]) -> list[dict]:
        return [i for i in self.incidents if (i["tenant_id"], i["agent_id"]) == series]


def load_dataset(d: Path, name: str | None = None, seed: int = -1) -> Dataset:
    w = Windows.load(d / "windows.npz")
    incidents = json.loads((d / "incidents.json").read_text()) if (d / "incidents.json").exists() else []
    control: set[tuple[str, str]] = set()
    m = d / "manifest.json"
    if m.exists():
        control = {tuple(s) for s in json.loads(m.read_text()).get("control_series", [])}
    return Dataset(name or d.name, seed, w, incidents, control, Path(d))


def window_dataset_dir(d: Path, keep_events: bool = False, log=print) -> None:
    """events.jsonl -> windows.npz and windows.csv (in the same folder)."""
    t = time.time()
    ev = parse_events_file(d / "events.jsonl")
    w = aggregate(ev, config.WINDOW_MS, dataset_period(d))
    w.save(d / "windows.npz")
    w.write_csv(d / "windows.csv")
    (d / "parse_stats.json").write_text(json.dumps(ev.stats, indent=1))
    log(f"  windowed {d.name}: {ev.stats} -> {len(w.series)} series x {w.n_slots} windows in {time.time() - t:.1f}s")
    if not keep_events:
        (d / "events.jsonl").unlink()


def dataset_dir(work: Path, seed: int, incidents: bool, tasks_per_day: float | None = None) -> Path:
    name = f"{'incidents' if incidents else 'normal'}-{seed}"
    if tasks_per_day is not None:
        name += f"-{tasks_per_day:g}perday"
    # One folder per window length: the cached windows are of that length.
    return Path(work) / f"data-{config.WINDOW_SECS}s" / name


def ensure_dataset(work: Path, seed: int, incidents: bool, ingest: Path | None = None,
                   keep_events: bool = False, log=print, tasks_per_day: float | None = None) -> Dataset:
    d = dataset_dir(work, seed, incidents, tasks_per_day)
    if not (d / "windows.npz").exists():
        if d.exists():
            shutil.rmtree(d)
        d.parent.mkdir(parents=True, exist_ok=True)
        cmd = gen_command(ingest or ingest_binary(), d, seed, incidents, tasks_per_day=tasks_per_day)
        log("  $ " + " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        window_dataset_dir(d, keep_events=keep_events, log=log)
    if not (d / "windows.csv").exists():
        Windows.load(d / "windows.npz").write_csv(d / "windows.csv")
    return load_dataset(d, d.name, seed)


def sequence_index(n_series: int, n_slots: int, seq_len: int = config.SEQUENCE_LENGTH,
                   stride: int = 1) -> np.ndarray:
    """(series, end slot) of every scorable sequence: [N, 2]."""
    ends = np.arange(seq_len - 1, n_slots, stride)
    s, t = np.meshgrid(np.arange(n_series), ends, indexing="ij")
    return np.stack([s.reshape(-1), t.reshape(-1)], axis=1)


def gather(arr: np.ndarray, idx: np.ndarray, seq_len: int = config.SEQUENCE_LENGTH) -> np.ndarray:
    """Sequences [N, L, ...] of `arr` [S, T, ...] ending at idx[:, 1] of series idx[:, 0]."""
    offsets = np.arange(-seq_len + 1, 1)
    return arr[idx[:, :1], idx[:, 1:2] + offsets]
