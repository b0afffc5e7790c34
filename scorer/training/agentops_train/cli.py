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


def _datasets(work: Path, ingest: str | None, keep_events: bool):
    from .data import ensure_dataset, ingest_binary

    binary = ingest_binary(ingest)
    mk = lambda seed, inc, per_day=None: ensure_dataset(work, seed, inc, binary, keep_events, log, per_day)  # noqa: E731
    return {
        "train": [mk(s, False) for s in config.TRAIN_SEEDS],
        "val": [mk(s, False) for s in config.VAL_SEEDS],
        "tuning": mk(config.TUNING_SEED, True),
        "eval": [mk(s, True) for s in config.EVAL_SEEDS],
        "clean": [mk(s, False, per_day) for s, per_day in config.CLEAN_SETS],
    }


def _evaluate(scorer, models: Path, data: dict, budget: float, write: bool) -> str:
    from .evidence import run

    args = ["evaluate", "--models", str(models), "--tuning", str(data["tuning"].path),
            "--eval", *[str(d.path) for d in data["eval"]],
            "--clean", *[str(d.path) for d in data["clean"]], "--budget", str(budget)]
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
    from .export import export, max_abs_diff
    from .models import LeanTransformer
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
        f"tuning seed {config.TUNING_SEED} under {config.FALSE_ALARM_BUDGET} false alarms per series-day)")
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
        "tuning_seed": config.TUNING_SEED,
        "eval_seeds": list(config.EVAL_SEEDS),
        "clean_sets": [{"seed": s, "tasks_per_day": t} for s, t in config.CLEAN_SETS],
        "false_alarm_budget": config.FALSE_ALARM_BUDGET,
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
        "tuning": "scorer tune: each autoencoder calibrated on the validation seeds' warm windows (median and "
                  "1.4826 MAD of ln error); weights (grid of tenths) and threshold with the best event F1 on the "
                  "tuning seed among those within the false-alarm budget",
    }
    write_json(out / "manifest.json", build_manifest(out, detector, training, args.date))
    _tune_and_finish(scorer, out, data, args.date)
    log(f"done in {time.time() - t0:.0f}s (data {t_data:.0f}s, training "
        + ", ".join(f"{k} {r.seconds:.0f}s" for k, r in results.items()) + ")")
    return 0


def _tune_and_finish(scorer, out: Path, data: dict, date: str | None) -> None:
    """`scorer tune` (calibration on the validation seeds, weights and threshold on the tuning seed),
    the version (ONNX files + calibration + ensemble), the reference cases, the evaluation."""
    from .artifacts import build_reference, set_version, write_json
    from .evidence import evidence, run
    from .scoring import OnnxModel

    run(scorer, ["tune", "--models", str(out), "--normal", *[str(d.path) for d in data["val"]],
                 "--tuning", str(data["tuning"].path), "--budget", str(config.FALSE_ALARM_BUDGET)], log)
    manifest = set_version(json.loads((out / "manifest.json").read_text()), out, date)
    write_json(out / "manifest.json", manifest)
    log(f"  manifest version {manifest['version']}, weights {manifest['ensemble']['weights']}, "
        f"threshold {manifest['ensemble']['threshold']}")
    models = manifest["models"]
    lstm, tr = OnnxModel(out / models["lstm"]["file"]), OnnxModel(out / models["transformer"]["file"])
    tuning = data["tuning"]
    tune_ev = evidence(scorer, tuning.path, log=log)
    write_json(out / "reference.json",
               build_reference(tune_ev, tuning.incidents, tuning.windows.window_starts(), manifest, lstm, tr))
    log(f"5/5 evaluation on seeds {config.EVAL_SEEDS} and clean traffic {config.CLEAN_SETS} (`scorer evaluate`)")
    log(_evaluate(scorer, out, data, config.FALSE_ALARM_BUDGET, write=True))


def cmd_tune(args) -> int:
    from .evidence import scorer_binary

    data = _datasets(Path(args.work), args.ingest, args.keep_events)
    _tune_and_finish(scorer_binary(args.scorer), Path(args.models), data, args.date)
    return 0


def cmd_evaluate(args) -> int:
    from .evidence import scorer_binary

    data = _datasets(Path(args.work), args.ingest, args.keep_events)
    log(_evaluate(scorer_binary(args.scorer), Path(args.models), data, config.FALSE_ALARM_BUDGET, args.write))
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

    e = sub.add_parser("evaluate", help="evaluate committed models on the evaluation seeds (`scorer evaluate`)")
    common(e)
    e.add_argument("--models", default="scorer/models")
    e.add_argument("--write", action="store_true", help="rewrite evaluation.json/.md next to the models")
    e.set_defaults(fn=cmd_evaluate)

    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
