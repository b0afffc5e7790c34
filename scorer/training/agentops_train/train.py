"""Training of one autoencoder on normal sequences: masked MSE, Adam, early stopping."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import config
from .data import gather
from .models import build


def set_determinism(seed: int = config.SEED, threads: int = config.THREADS) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable once per process, before any parallel work
        pass
    torch.use_deterministic_algorithms(True)


def masked_mse(recon: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (mask * (recon - x) ** 2).sum() / mask.sum().clamp_min(1.0)


@dataclass
class SequencePool:
    """Normalized data sets [S, T, F] with the (data set, series, end slot) of their sequences."""

    z: list[np.ndarray]
    m: list[np.ndarray]
    index: np.ndarray  # [N, 3]: data set, series, end slot

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zs, ms = [], []
        for k in np.unique(rows[:, 0]):
            sel = rows[rows[:, 0] == k][:, 1:]
            zs.append(gather(self.z[k], sel))
            ms.append(gather(self.m[k], sel))
        return np.concatenate(zs), np.concatenate(ms)


@dataclass
class TrainConfig:
    max_epochs: int = 30
    patience: int = 5
    min_rel_improvement: float = 2e-3
    batch_size: int = 256
    samples_per_epoch: int = 65_536
    lr: float = 2e-3
    grad_clip: float = 1.0
    seed: int = config.SEED


@dataclass
class TrainResult:
    model: torch.nn.Module
    epochs: int  # epochs run
    best_epoch: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def evaluate_loss(model: torch.nn.Module, z: np.ndarray, m: np.ndarray, batch: int = 4096) -> float:
    model.eval()
    num = den = 0.0
    with torch.no_grad():
        for i in range(0, len(z), batch):
            x = torch.from_numpy(z[i:i + batch])
            mk = torch.from_numpy(m[i:i + batch])
            r = model(x)
            num += float((mk * (r - x) ** 2).sum())
            den += float(mk.sum())
    return num / max(den, 1.0)


def train_model(kind: str, train: SequencePool, val_z: np.ndarray, val_m: np.ndarray,
                cfg: TrainConfig = TrainConfig(), log=print, sizes: dict | None = None) -> TrainResult:
    set_determinism(cfg.seed)
    model = build(kind, sizes)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    rng = np.random.default_rng(cfg.seed)
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    best_epoch = 0
    history = []
    t0 = time.time()
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        n = min(cfg.samples_per_epoch, len(train.index))
        rows = train.index[rng.choice(len(train.index), size=n, replace=False)]
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            zb, mb = train.batch(rows[i:i + cfg.batch_size])
            x, mk = torch.from_numpy(zb), torch.from_numpy(mb)
            opt.zero_grad()
            loss = masked_mse(model(x), x, mk)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(zb)
        val = evaluate_loss(model, val_z, val_m)
        sched.step(val)
        history.append({"epoch": epoch, "train_loss": total / n, "val_loss": val})
        log(f"  [{kind}] epoch {epoch:2d} train {total / n:.5f} val {val:.5f} ({time.time() - t0:.0f}s)")
        if val < best[0]:
            # the best weights are kept; only a real improvement restarts the patience
            improved = val < best[0] * (1 - cfg.min_rel_improvement)
            best = (val, epoch if improved else best[1], copy.deepcopy(model.state_dict()))
            best_epoch = epoch
        if epoch - best[1] >= cfg.patience:
            break
    model.load_state_dict(best[2])
    model.eval()
    return TrainResult(model, epoch, best_epoch, best[0], history, time.time() - t0)


def save_result(r: TrainResult, path) -> None:
    torch.save({"state_dict": r.model.state_dict(), "sizes": r.model.hparams, "epochs": r.epochs, "best_epoch": r.best_epoch,
                "best_val_loss": r.best_val_loss, "history": r.history, "seconds": r.seconds}, path)


def load_result(kind: str, path) -> TrainResult:
    d = torch.load(path, weights_only=False)
    sizes = {k: v for k, v in d.get("sizes", {}).items() if k not in ("decoder_layers", "norm_first")}
    model = build(kind, sizes)
    model.load_state_dict(d["state_dict"])
    model.eval()
    return TrainResult(model, d["epochs"], d["best_epoch"], d["best_val_loss"], d["history"], d["seconds"])
