"""Command line: `python -m agentops_train {all,evaluate,csv}` (see README.md)."""

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
    mk = lambda seed, inc: ensure_dataset(work, seed, inc, binary, keep_events, log)  # noqa: E731
    return {
        "train": [mk(s, False) for s in config.TRAIN_SEEDS],
        "val": [mk(s, False) for s in config.VAL_SEEDS],
        "tuning": mk(config.TUNING_SEED, True),
        "eval": [mk(s, True) for s in config.EVAL_SEEDS],
    }


KINDS = ["latency_regression", "success_rate_drop", "intervention_surge", "cost_spike", "slow_drift",
         "traffic_outage"]


def evaluation_markdown(ev: dict) -> str:
    def f(v, d=3):
        return "n/a" if v is None else f"{v:.{d}f}"

    head = ("| model | threshold | precision | recall | F1 | event PR-AUC | window AP | mean delay (min) | "
            "median delay (min) | " + " | ".join(f"recall {k}" for k in KINDS) + " | control false alarms / series-day |")
    sep = "|" + "---|" * (10 + len(KINDS))
    rows = [head, sep]
    for name, key in (("LSTM AE", "lstm"), ("Transformer AE", "transformer"), ("Ensemble", "ensemble")):
        r = ev["models"][key]
        kinds = " | ".join(
            f"{r['recall_per_kind'][k]['detected']}/{r['recall_per_kind'][k]['incidents']}" if k in r["recall_per_kind"]
            else "n/a" for k in KINDS)
        rows.append(
            f"| {name} | {f(r['threshold'], 2)} | {f(r['precision'])} | {f(r['recall'])} | {f(r['f1'])} | "
            f"{f(r['event_pr_auc'])} | {f(r['window_average_precision'])} | {f(r['mean_delay_min'], 1)} | "
            f"{f(r['median_delay_min'], 1)} | {kinds} | {f(r['control_false_alarms_per_series_day'], 4)} |")
    counts = ev["models"]["ensemble"]
    rows.append("")
    rows.append(f"Data: seeds {ev['eval_seeds']} x {config.DAYS} days x 4 tenants x 8 agents "
                f"({counts['incidents']} incidents, {counts['control_series_days']:.0f} control series-days); "
                f"alarms (true/false): " + ", ".join(
                    f"{k} {ev['models'][k]['true_alarms']}/{ev['models'][k]['false_alarms']}"
                    for k in ("lstm", "transformer", "ensemble")) + ".")
    return "\n".join(rows) + "\n"


def run_evaluation(eval_ds, manifest: dict, lstm, tr) -> dict:
    from .calibrate import ScoreSet, dataset_errors
    from .evaluate import report
    from .normalize import Normalizer
    from .scoring import Calibration

    norm = Normalizer.from_json(manifest["normalization"])
    mods = manifest["models"]
    scores = ScoreSet([dataset_errors(d, norm, lstm, tr) for d in eval_ds],
                      Calibration(**mods["lstm"]["calibration"]), Calibration(**mods["transformer"]["calibration"]))
    w = manifest["ensemble"]["weights"]
    sweep_grid = np.round(np.arange(-5.0, 80.0 + 1e-9, 0.05), 4)
    out = {"eval_seeds": [d.seed for d in eval_ds], "models": {}}
    for key, items, th in (
        ("lstm", scores.items("lstm"), mods["lstm"]["threshold_alone"]),
        ("transformer", scores.items("transformer"), mods["transformer"]["threshold_alone"]),
        ("ensemble", scores.items("ensemble", w["lstm"], w["transformer"]), manifest["ensemble"]["threshold"]),
    ):
        out["models"][key] = report(items, th, sweep_grid)
        r = out["models"][key]
        log(f"  {key:12s} P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f} "
            f"PR-AUC {r['event_pr_auc']:.3f} AP {r['window_average_precision']:.3f} "
            f"delay {r['median_delay_min']} control FA/series-day {r['control_false_alarms_per_series_day']:.4f}")
    return out


def cmd_all(args) -> int:
    import onnx
    import onnxruntime
    import torch

    from .artifacts import build_manifest, build_reference, write_json
    from .calibrate import ScoreSet, dataset_errors, fit_calibrations, tune
    from .data import gather, sequence_index
    from .export import export, max_abs_diff
    from .normalize import Normalizer
    from .scoring import OnnxModel
    from .models import LeanTransformer, NoiseAwareOutput, noise_weights
    from .train import SequencePool, TrainConfig, load_result, save_result, train_model

    t0 = time.time()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"1/6 data sets in {work}")
    data = _datasets(work, args.ingest, args.keep_events)
    t_data = time.time() - t0

    log("2/6 normalization (training windows)")
    norm = Normalizer.fit(np.concatenate([d.x.reshape(-1, config.N_FEATURES) for d in data["train"]]))
    log(f"  median {np.round(norm.median, 4).tolist()} scale {np.round(norm.scale, 4).tolist()}")
    zm = [norm.transform(d.x) for d in data["train"]]
    index = np.concatenate([
        np.concatenate([np.full((n, 1), k), sequence_index(len(d.series), d.windows.n_slots)], axis=1)
        for k, d in enumerate(data["train"])
        for n in [len(d.series) * (d.windows.n_slots - config.SEQUENCE_LENGTH + 1)]
    ])
    pool = SequencePool([z for z, _ in zm], [m for _, m in zm], index)
    vz, vm, vn = [], [], []
    for d in data["val"]:
        z, m = norm.transform(d.x)
        idx = sequence_index(len(d.series), d.windows.n_slots, stride=3)
        vz.append(gather(z, idx))
        vm.append(gather(m, idx))
        vn.append(gather(d.windows.counts["tasks_total"].astype(np.float64), idx))
    val_z, val_m, val_n = np.concatenate(vz), np.concatenate(vm), np.concatenate(vn)
    log(f"  {len(index)} training sequences, {len(val_z)} validation sequences")

    log("3/6 training")
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

    log(f"4/6 noise-aware output layer (volume_k {args.volume_k}) and ONNX export")
    exported = {}
    lean_diff = None
    for kind, r in results.items():
        with torch.no_grad():
            recon = np.concatenate([r.model(torch.from_numpy(val_z[i:i + 4096])).numpy()
                                    for i in range(0, len(val_z), 4096)])
        scale = noise_weights(val_z, val_m, recon, val_n, args.volume_k)
        ae = r.model
        if kind == "transformer":
            # The same function and weights, as a leaner graph (~1.4x faster in onnxruntime).
            ae = LeanTransformer(r.model).eval()
            with torch.no_grad():
                lean = np.concatenate([ae(torch.from_numpy(val_z[i:i + 4096])).numpy()
                                       for i in range(0, len(val_z), 4096)])
            lean_diff = float(np.abs(lean - recon).max())
            log(f"  [transformer] max |module - lean graph| = {lean_diff:.2e}")
            if lean_diff > 1e-3:
                raise SystemExit(f"the lean Transformer differs from the trained one by {lean_diff}")
        exported[kind] = NoiseAwareOutput(ae, scale, norm.median[4], norm.scale[4], args.volume_k).eval()
        log(f"  [{kind}] feature_scale {np.round(scale, 4).tolist()}")
    paths = {"lstm": out / config.LSTM_FILE, "transformer": out / config.TRANSFORMER_FILE}
    diffs = {}
    for kind, path in paths.items():
        export(exported[kind], path)
        diffs[kind] = max_abs_diff(exported[kind], path, val_z)
        log(f"  {path} ({path.stat().st_size} bytes): max |torch - onnxruntime| = {diffs[kind]:.2e}")
        if diffs[kind] > 1e-3:
            raise SystemExit(f"{kind}: PyTorch and ONNX disagree by {diffs[kind]}")
        if diffs[kind] > 1e-5:
            log(f"  WARNING: {kind}: PyTorch and ONNX differ by more than 1e-5")
    lstm, tr = OnnxModel(paths["lstm"]), OnnxModel(paths["transformer"])

    log("5/6 calibration (validation normal windows) and tuning (labelled seed "
        f"{config.TUNING_SEED})")
    cal_l, cal_t = fit_calibrations([dataset_errors(d, norm, lstm, tr) for d in data["val"]])
    log(f"  lstm {cal_l.to_json()} transformer {cal_t.to_json()}")
    tune_err = dataset_errors(data["tuning"], norm, lstm, tr)
    tuned = tune(ScoreSet([tune_err], cal_l, cal_t), log)
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
        "output_layer": {k: {"kind": "NoiseAwareOutput (see agentops_train/models.py)", **m.hparams}
                         for k, m in exported.items()},
        "train_config": {"max_epochs": cfg.max_epochs, "patience": cfg.patience, "batch_size": cfg.batch_size,
                         "samples_per_epoch": cfg.samples_per_epoch, "lr": cfg.lr, "loss": "masked MSE",
                         "optimizer": "Adam"},
        "torch_vs_onnx_max_abs_diff": diffs,
        "transformer_lean_graph_max_abs_diff": lean_diff,
        "tuning": {
            "criterion": "event-level F1 on the tuning seed (highest threshold among ties)",
            "f1": {"lstm": tuned["lstm"]["f1"], "transformer": tuned["transformer"]["f1"],
                   "ensemble": tuned["ensemble"]["f1"]},
            "ensemble_grid": tuned["ensemble"]["grid"],
        },
    }
    manifest = build_manifest(out, norm, cal_l, cal_t, tuned, training, args.date)
    write_json(out / "manifest.json", manifest)
    write_json(out / "reference.json", build_reference(tune_err, manifest, lstm, tr))
    log(f"  manifest version {manifest['version']}, weights {manifest['ensemble']['weights']}, "
        f"threshold {manifest['ensemble']['threshold']}")

    log(f"6/6 evaluation on seeds {config.EVAL_SEEDS}")
    ev = run_evaluation(data["eval"], manifest, lstm, tr)
    ev["model_version"] = manifest["version"]
    ev["wall_seconds"] = {"total": round(time.time() - t0, 1), "data": round(t_data, 1),
                          "train": {k: round(r.seconds, 1) for k, r in results.items()}}
    write_json(out / "evaluation.json", ev)
    (out / "evaluation.md").write_text(evaluation_markdown(ev))
    log(evaluation_markdown(ev))
    log(f"done in {time.time() - t0:.0f}s")
    return 0


def cmd_evaluate(args) -> int:
    from .artifacts import write_json
    from .scoring import OnnxModel

    models = Path(args.models)
    manifest = json.loads((models / "manifest.json").read_text())
    data = _datasets(Path(args.work), args.ingest, args.keep_events)
    lstm = OnnxModel(models / manifest["models"]["lstm"]["file"])
    tr = OnnxModel(models / manifest["models"]["transformer"]["file"])
    ev = run_evaluation(data["eval"], manifest, lstm, tr)
    ev["model_version"] = manifest["version"]
    if args.write:
        write_json(models / "evaluation.json", ev)
        (models / "evaluation.md").write_text(evaluation_markdown(ev))
    log(evaluation_markdown(ev))
    return 0


def cmd_csv(args) -> int:
    from .data import ensure_dataset, ingest_binary, load_dataset, window_dataset_dir
    from .offline_csv import write_offline

    if args.dataset:
        d = Path(args.dataset)
        if not (d / "windows.npz").exists():
            window_dataset_dir(d, keep_events=True, log=log)
        ds = load_dataset(d)
    else:
        ds = ensure_dataset(Path(args.work), args.seed, not args.no_incidents, ingest_binary(args.ingest),
                            args.keep_events, log)
    index = write_offline(ds, Path(args.out))
    log(f"wrote {len(index)} series to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agentops_train", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--work", default="/tmp/agentops-train", help="data sets and caches")
        sp.add_argument("--ingest", help="the ingest binary (default: target/release/ingest)")
        sp.add_argument("--keep-events", action="store_true", help="keep events.jsonl after windowing")

    a = sub.add_parser("all", help="generate data, train, export, calibrate, write manifest + reference, evaluate")
    common(a)
    a.add_argument("--out", default="scorer/models")
    a.add_argument("--max-epochs", type=int, default=40)
    a.add_argument("--volume-k", type=float, default=40.0,
                   help="tasks at which a window's per-task features get half weight (NoiseAwareOutput)")
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

    e = sub.add_parser("evaluate", help="evaluate committed models on the evaluation seeds")
    common(e)
    e.add_argument("--models", default="scorer/models")
    e.add_argument("--write", action="store_true", help="rewrite evaluation.json/.md next to the models")
    e.set_defaults(fn=cmd_evaluate)

    c = sub.add_parser("csv", help="per-series feature CSV + labels JSON for `scorer offline`")
    common(c)
    c.add_argument("--dataset", help="a generated data-set folder (events.jsonl, incidents.json, manifest.json)")
    c.add_argument("--seed", type=int, default=config.EVAL_SEEDS[0], help="generate this seed instead")
    c.add_argument("--no-incidents", action="store_true")
    c.add_argument("--out", required=True)
    c.set_defaults(fn=cmd_csv)

    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
