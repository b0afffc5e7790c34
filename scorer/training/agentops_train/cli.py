"""Command line: `python -m agentops_train {data,all,evaluate}` (see README.md)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import config


def log(msg: str) -> None:
    print(msg, flush=True)


def _datasets(work: Path, ingest: str | None, keep_events: bool, eval_seeds: list[int] | None = None):
    from .data import ensure_dataset, ingest_binary

    binary = ingest_binary(ingest)
    mk = lambda seed, inc, per_day=None: ensure_dataset(work, seed, inc, binary, keep_events, log, per_day)  # noqa: E731
    return {
        "train": [mk(s, False) for s in config.TRAIN_SEEDS],
        "val": [mk(s, False) for s in config.VAL_SEEDS],
        "tuning": [mk(s, True) for s in config.TUNING_SEEDS],
        "eval": [mk(s, True) for s in (eval_seeds or config.EVAL_SEEDS)],
        "clean": [mk(s, False, per_day) for s, per_day in config.CLEAN_SETS],
    }


# The tuning budget as `scorer tune` and `scorer evaluate` take it.
BUDGET_ARGS = ["--budget", str(config.FALSE_ALARM_BUDGET), "--max-median-delay-min", str(config.MAX_MEDIAN_DELAY_MIN)]


def _evaluate(scorer, models: Path, data: dict, write: bool) -> str:
    from .evidence import run

    args = ["evaluate", "--models", str(models), "--tuning", *[str(d.path) for d in data["tuning"]],
            "--eval", *[str(d.path) for d in data["eval"]],
            "--clean", *[str(d.path) for d in data["clean"]], *BUDGET_ARGS]
    if write:
        args += ["--out", str(models / "evaluation.json"), "--markdown", str(models / "evaluation.md")]
    return run(scorer, args, log)


def cmd_data(args) -> int:
    data = _datasets(Path(args.work), args.ingest, args.keep_events)
    for group, sets in data.items():
        for d in sets if isinstance(sets, list) else [sets]:
            log(f"{group}: {d.path}")
    return 0


def cmd_all(args) -> int:
    import onnx
    import onnxruntime
    import torch

    from .artifacts import build_manifest, write_json
    from .data import sequence_index, gather
    from .evidence import evidence, scorer_binary
    from .train import SequencePool, TrainConfig, load_result, save_result, train_model

    t0 = time.time()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scorer = scorer_binary(args.scorer)
    log(f"1/5 data sets in {work}")
    data = _datasets(work, args.ingest, args.keep_events)
    t_data = time.time() - t0

    log("2/5 evidence (the Rust detector: `scorer features`)")
    train_ev = [evidence(scorer, d.path, log=log) for d in data["train"]]
    val_ev = [evidence(scorer, d.path, log=log) for d in data["val"]]
    detector = train_ev[0].detector
    index = np.concatenate([
        np.concatenate([np.full((n, 1), k), sequence_index(e.z.shape[0], e.z.shape[1])], axis=1)
        for k, e in enumerate(train_ev)
        for n in [e.z.shape[0] * (e.z.shape[1] - config.SEQUENCE_LENGTH + 1)]
    ])
    pool = SequencePool([e.z for e in train_ev], [e.mask for e in train_ev], index)
    vz, vm = [], []
    for e in val_ev:
        idx = sequence_index(e.z.shape[0], e.z.shape[1], stride=3)
        vz.append(gather(e.z, idx))
        vm.append(gather(e.mask, idx))
    val_z, val_m = np.concatenate(vz), np.concatenate(vm)
    log(f"  {len(index)} training sequences, {len(val_z)} validation sequences")

    log("3/5 training")
    cfg = TrainConfig(max_epochs=args.max_epochs, samples_per_epoch=args.samples_per_epoch)
    sizes = {"lstm": {k: v for k, v in {"hidden": args.lstm_hidden, "patch": args.lstm_patch}.items() if v},
             "transformer": {k: v for k, v in {"d_model": args.d_model, "heads": args.heads,
                                               "layers": args.layers, "ff": args.ff,
                                               "patch": args.transformer_patch}.items() if v}}
    results = {}
    ckpt_dir = work / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("lstm", "transformer"):
        ckpt = ckpt_dir / f"{kind}.pt"
        if kind in args.reuse and ckpt.exists():
            results[kind] = load_result(kind, ckpt)
            log(f"  [{kind}] reused {ckpt}")
        else:
            results[kind] = train_model(kind, pool, val_z, val_m, cfg, log, sizes.get(kind))
            save_result(results[kind], ckpt)
        r = results[kind]
        log(f"  [{kind}] best epoch {r.best_epoch}/{r.epochs}, val loss {r.best_val_loss:.5f}, {r.seconds:.0f}s")

    log("4/5 ONNX export, manifest, `scorer tune` (calibration on normal data, weights and threshold on the "
        f"tuning seeds {config.TUNING_SEEDS} under {config.FALSE_ALARM_BUDGET} false alarms per series-day)")
    diffs, lean_diff = _export_models(results, out, val_z)
    training = {
        "command": "PYTHONPATH=scorer/training python -m agentops_train all --out scorer/models "
                   "--work /tmp/agentops-train" + "".join(
                       f" --{flag} {value}" for flag, value in [
                           ("lstm-hidden", args.lstm_hidden), ("lstm-patch", args.lstm_patch),
                           ("d-model", args.d_model), ("transformer-patch", args.transformer_patch),
                           ("heads", args.heads), ("layers", args.layers), ("ff", args.ff)] if value),
        "days": config.DAYS,
        "train_seeds": list(config.TRAIN_SEEDS),
        "val_seeds": list(config.VAL_SEEDS),
        "eval_seeds": list(config.EVAL_SEEDS),
        "clean_sets": [{"seed": s, "tasks_per_day": t} for s, t in config.CLEAN_SETS],
        "seed": config.SEED,
        "python": platform.python_version(),
        "torch": torch.__version__.split("+")[0],
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": config.ONNX_OPSET,
        "epochs": {k: r.epochs for k, r in results.items()},
        "best_epoch": {k: r.best_epoch for k, r in results.items()},
        "val_loss": {k: r.best_val_loss for k, r in results.items()},
        "hyperparameters": {k: r.model.hparams for k, r in results.items()},
        "train_config": {"max_epochs": cfg.max_epochs, "patience": cfg.patience, "batch_size": cfg.batch_size,
                         "samples_per_epoch": cfg.samples_per_epoch, "lr": cfg.lr, "loss": "masked MSE",
                         "optimizer": "Adam"},
        "torch_vs_onnx_max_abs_diff": diffs,
        "transformer_lean_graph_max_abs_diff": lean_diff,
    }
    write_json(out / "manifest.json", build_manifest(out, detector, training, args.date))
    _tune_and_finish(scorer, out, data, args.date)
    log(f"done in {time.time() - t0:.0f}s (data {t_data:.0f}s, training "
        + ", ".join(f"{k} {r.seconds:.0f}s" for k, r in results.items()) + ")")
    return 0


def _export_models(results: dict, out: Path, val_z: np.ndarray) -> tuple[dict, float | None]:
    """Both trained models to ONNX in `out` (the Transformer as its leaner graph), each checked
    against onnxruntime; returns the largest differences."""
    import torch

    from .export import export, max_abs_diff
    from .models import LeanTransformer

    paths = {"lstm": out / config.LSTM_FILE, "transformer": out / config.TRANSFORMER_FILE}
    diffs, lean_diff = {}, None
    for kind, r in results.items():
        model = r.model
        if kind == "transformer":
            # The same function and weights, as a leaner graph (~1.4x faster in onnxruntime).
            model = LeanTransformer(r.model).eval()
            with torch.no_grad():
                a = r.model(torch.from_numpy(val_z[:4096])).numpy()
                b = model(torch.from_numpy(val_z[:4096])).numpy()
            lean_diff = float(np.abs(a - b).max())
            log(f"  [transformer] max |module - lean graph| = {lean_diff:.2e}")
            if lean_diff > 1e-3:
                raise SystemExit(f"the lean Transformer differs from the trained one by {lean_diff}")
        export(model, paths[kind])
        diffs[kind] = max_abs_diff(model, paths[kind], val_z)
        log(f"  {paths[kind]} ({paths[kind].stat().st_size} bytes): max |torch - onnxruntime| = {diffs[kind]:.2e}")
        if diffs[kind] > 1e-3:
            raise SystemExit(f"{kind}: PyTorch and ONNX disagree by {diffs[kind]}")
    return diffs, lean_diff


def _tuning_record() -> dict:
    """How the set's scales, calibration, weights and threshold are fitted (the manifest's
    `training` keys that `_tune_and_finish` writes, for `all` and `tune` alike)."""
    return {
        "tuning_seeds": list(config.TUNING_SEEDS),
        "false_alarm_budget": config.FALSE_ALARM_BUDGET,
        "max_median_delay_min": config.MAX_MEDIAN_DELAY_MIN,
        "tuning": "scorer tune: each autoencoder calibrated on the validation seeds' warm windows (median and "
                  "1.4826 MAD of ln error) and the statistical member's per-KPI scales on the same windows; "
                  "weights (grid of tenths) and threshold with the best event F1 on the tuning seeds (pooled) "
                  "among those within the false-alarm budget and the median-delay bound (within the false "
                  "alarms only where none reaches the bound)",
    }


def _tune_and_finish(scorer, out: Path, data: dict, date: str | None) -> None:
    """`scorer tune` (calibration and KPI scales on the validation seeds, weights and threshold on the
    tuning seeds), the version (ONNX files + calibration + ensemble), the reference cases, the
    evaluation."""
    from .artifacts import build_reference, set_version, write_json
    from .evidence import evidence, run
    from .scoring import OnnxModel

    manifest = json.loads((out / "manifest.json").read_text())
    training = manifest.setdefault("training", {})
    training.pop("tuning_seed", None)
    training.update(_tuning_record())
    write_json(out / "manifest.json", manifest)
    run(scorer, ["tune", "--models", str(out), "--normal", *[str(d.path) for d in data["val"]],
                 "--tuning", *[str(d.path) for d in data["tuning"]], *BUDGET_ARGS], log)
    manifest = set_version(json.loads((out / "manifest.json").read_text()), out, date)
    write_json(out / "manifest.json", manifest)
    log(f"  manifest version {manifest['version']}, weights {manifest['ensemble']['weights']}, "
        f"threshold {manifest['ensemble']['threshold']}")
    models = manifest["models"]
    lstm, tr = OnnxModel(out / models["lstm"]["file"]), OnnxModel(out / models["transformer"]["file"])
    tuning = data["tuning"][0]
    detector = out / "detector.json"
    write_json(detector, manifest["detector"])
    tune_ev = evidence(scorer, tuning.path, detector, log=log)
    detector.unlink()
    write_json(out / "reference.json",
               build_reference(tune_ev, tuning.incidents, tuning.windows.window_starts(), manifest, lstm, tr))
    log(f"5/5 evaluation on seeds {config.EVAL_SEEDS} and clean traffic {config.CLEAN_SETS} (`scorer evaluate`)")
    log(_evaluate(scorer, out, data, write=True))


def cmd_tune(args) -> int:
    from .evidence import scorer_binary

    data = _datasets(Path(args.work), args.ingest, args.keep_events)
    _tune_and_finish(scorer_binary(args.scorer), Path(args.models), data, args.date)
    return 0


def _epoch_ms(value: str) -> int:
    """A window start as `scorer offline` reads it: epoch ms or RFC 3339."""
    import datetime as dt

    v = value.strip()
    if v.lstrip("-").isdigit():
        return int(v)
    return int(dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)


def cmd_fit(args) -> int:
    """Retrain both autoencoders on a tenant's own KPI windows (`scorer export-windows`)."""
    import csv

    import onnxruntime
    import torch

    from .artifacts import build_manifest, set_version, write_json
    from .data import gather, sequence_index
    from .evidence import evidence, run, scorer_binary
    from .train import SequencePool, TrainConfig, train_model

    t0 = time.time()
    scorer = scorer_binary(args.scorer)
    import shutil
    import tempfile

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="agentops-fit-"))  # the validation windows, removed at the end
    base = json.loads((Path(args.base) / "manifest.json").read_text())
    log(f"1/4 evidence of {len(args.data)} data set(s) (`scorer features`); the last {args.val_fraction:.0%} of "
        "each one's time validates (early stopping, calibration)")
    train_idx, val_z, val_m, zs, ms, val_dirs = [], [], [], [], [], []
    for k, d in enumerate(args.data):
        ev = evidence(scorer, Path(d), log=log)
        n_series, n_slots = ev.z.shape[0], ev.z.shape[1]
        cut = int(n_slots * (1 - args.val_fraction))
        if cut < config.SEQUENCE_LENGTH or n_slots - cut < config.SEQUENCE_LENGTH:
            raise SystemExit(f"{d}: {n_slots} windows are too few to train and validate on")
        idx = sequence_index(n_series, n_slots)
        train = idx[idx[:, 1] < cut]
        train_idx.append(np.concatenate([np.full((len(train), 1), k), train], axis=1))
        val = idx[idx[:, 1] >= cut + config.SEQUENCE_LENGTH - 1]
        val_z.append(gather(ev.z, val))
        val_m.append(gather(ev.mask, val))
        zs.append(ev.z)
        ms.append(ev.mask)
        # The validation windows as a data set of their own, for `scorer tune`'s calibration.
        first = int(json.loads((Path(d) / "evidence" / "features.json").read_text())["first_window_start"])
        cut_ms = first + cut * config.WINDOW_MS
        vd = work / f"val-{k}"
        vd.mkdir(exist_ok=True)
        with open(Path(d) / "windows.csv", newline="") as src, open(vd / "windows.csv", "w", newline="") as dst:
            reader = csv.DictReader(src)
            writer = csv.DictWriter(dst, fieldnames=reader.fieldnames)
            writer.writeheader()
            writer.writerows(r for r in reader if _epoch_ms(r["window_start"]) >= cut_ms)
        val_dirs.append(vd)
    detector = ev.detector
    pool = SequencePool(zs, ms, np.concatenate(train_idx))
    vz, vm = np.concatenate(val_z), np.concatenate(val_m)
    log(f"  {len(pool.index)} training sequences, {len(vz)} validation sequences")

    log("2/4 training")
    cfg = TrainConfig(max_epochs=args.max_epochs, samples_per_epoch=args.samples_per_epoch)
    results = {}
    for kind in ("lstm", "transformer"):
        sizes = {k: v for k, v in base["training"].get("hyperparameters", {}).get(kind, {}).items()
                 if k not in ("decoder_layers", "norm_first")} or None
        results[kind] = r = train_model(kind, pool, vz, vm, cfg, log, sizes)
        log(f"  [{kind}] best epoch {r.best_epoch}/{r.epochs}, val loss {r.best_val_loss:.5f}, {r.seconds:.0f}s")

    log("3/4 ONNX export, manifest, `scorer tune`")
    diffs, lean_diff = _export_models(results, out, vz)
    training = {
        "command": "python -m agentops_train fit " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "fit",
        "data": [str(d) for d in args.data],
        "val_fraction": args.val_fraction,
        "tuning": [str(t) for t in args.tuning] if args.tuning else None,
        "base": str(args.base),
        "torch": torch.__version__.split("+")[0],
        "onnxruntime": onnxruntime.__version__,
        "epochs": {k: r.epochs for k, r in results.items()},
        "best_epoch": {k: r.best_epoch for k, r in results.items()},
        "val_loss": {k: r.best_val_loss for k, r in results.items()},
        "hyperparameters": {k: r.model.hparams for k, r in results.items()},
        "torch_vs_onnx_max_abs_diff": diffs,
        "transformer_lean_graph_max_abs_diff": lean_diff,
    }
    manifest = build_manifest(out, detector, training, args.date)
    # Without a labelled tuning set the base set's weights and threshold are kept.
    manifest["ensemble"] = base["ensemble"]
    write_json(out / "manifest.json", manifest)
    tune = ["tune", "--models", str(out), "--normal", *[str(d) for d in val_dirs], *BUDGET_ARGS]
    if args.tuning:
        tune += ["--tuning", *[str(t) for t in args.tuning]]
    run(scorer, tune, log)
    manifest = set_version(json.loads((out / "manifest.json").read_text()), out, args.date)
    write_json(out / "manifest.json", manifest)
    log(f"4/4 {out}: version {manifest['version']}, weights {manifest['ensemble']['weights']}, "
        f"threshold {manifest['ensemble']['threshold']}")
    log(run(scorer, ["check-models", "--models", str(out)], log).strip())
    shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.time() - t0:.0f}s; serve it with `scorer.model_dir = {out}` (hot reload picks it up)")
    return 0


def cmd_evaluate(args) -> int:
    from .evidence import scorer_binary

    if args.write and args.eval_seeds:
        log("--write records the evaluation seeds' table next to the models; other seeds are printed only")
        return 2
    data = _datasets(Path(args.work), args.ingest, args.keep_events, args.eval_seeds)
    log(_evaluate(scorer_binary(args.scorer), Path(args.models), data, args.write))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agentops_train", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--work", default="/tmp/agentops-train", help="data sets and caches")
        sp.add_argument("--ingest", help="the ingest binary (default: target/release/ingest)")
        sp.add_argument("--scorer", help="the scorer binary (default: target/release/scorer)")
        sp.add_argument("--keep-events", action="store_true", help="keep events.jsonl after windowing")

    d = sub.add_parser("data", help="generate and window every data set (train, validation, tuning, "
                                    "evaluation, clean traffic) into --work")
    common(d)
    d.set_defaults(fn=cmd_data)

    a = sub.add_parser("all", help="generate data, train, export, calibrate, write manifest + reference, evaluate")
    common(a)
    a.add_argument("--out", default="scorer/models")
    a.add_argument("--max-epochs", type=int, default=40)
    a.add_argument("--samples-per-epoch", type=int, default=65_536)
    a.add_argument("--reuse", nargs="*", default=[], choices=["lstm", "transformer"],
                   help="reuse these models' checkpoints from --work instead of training (development)")
    a.add_argument("--date", help="version date (default: today, UTC, YYYY.MM.DD)")
    a.add_argument("--lstm-hidden", type=int, help="LSTM hidden size (default 32)")
    a.add_argument("--lstm-patch", type=int, default=4, help="windows per LSTM step (default 4)")
    a.add_argument("--d-model", type=int, help="Transformer width (default 32)")
    a.add_argument("--heads", type=int, default=2, help="Transformer attention heads (default 2)")
    a.add_argument("--layers", type=int, help="Transformer encoder layers (default 2)")
    a.add_argument("--ff", type=int, help="Transformer feed-forward width (default 64)")
    a.add_argument("--transformer-patch", type=int, default=4, help="windows per Transformer token (default 4)")
    a.set_defaults(fn=cmd_all)

    t = sub.add_parser("tune", help="re-tune a model set without training: calibration, weights and threshold "
                                    "(`scorer tune`), version, reference cases, evaluation")
    common(t)
    t.add_argument("--models", default="scorer/models")
    t.add_argument("--date", help="version date (default: today, UTC, YYYY.MM.DD)")
    t.set_defaults(fn=cmd_tune)

    f = sub.add_parser("fit", help="retrain both autoencoders on your own KPI windows (directories with a "
                                  "windows.csv, e.g. from `scorer export-windows`) and write a model set")
    f.add_argument("--data", nargs="+", required=True, help="data set directories (each with windows.csv)")
    f.add_argument("--out", required=True, help="the new model set's directory")
    f.add_argument("--tuning", nargs="+", help="labelled data sets (windows.csv + incidents.json) to tune "
                                               "weights and threshold on, pooled; without any the base set's "
                                               "are kept")
    f.add_argument("--base", default="scorer/models", help="the model set whose sizes, weights and threshold "
                                                          "are the starting point (default scorer/models)")
    f.add_argument("--val-fraction", type=float, default=0.2, help="the last part of each data set's time "
                                                                   "that validates (default 0.2)")
    f.add_argument("--max-epochs", type=int, default=12)
    f.add_argument("--samples-per-epoch", type=int, default=65_536)
    f.add_argument("--date", help="version date (default: today, UTC, YYYY.MM.DD)")
    f.add_argument("--scorer", help="the scorer binary (default: target/release/scorer)")
    f.set_defaults(fn=cmd_fit)

    e = sub.add_parser("evaluate", help="evaluate committed models on the evaluation seeds (`scorer evaluate`)")
    common(e)
    e.add_argument("--models", default="scorer/models")
    e.add_argument("--write", action="store_true", help="rewrite evaluation.json/.md next to the models")
    e.add_argument("--eval-seeds", type=int, nargs="+", metavar="SEED",
                   help=f"judge on these incident seeds instead of {config.EVAL_SEEDS} (printed, not written)")
    e.set_defaults(fn=cmd_evaluate)

    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
