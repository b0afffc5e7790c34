"""`python -m agentops_train fit`: a model set retrained on one's own KPI windows, end to end with
the `scorer` binary (PyTorch-only: deselected by `-m 'not torch'`; skipped without a release
`scorer`)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("torch")

from agentops_train import config  # noqa: E402
from agentops_train.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SCORER = ROOT / "target" / "release" / "scorer"
BASE = ROOT / "scorer" / "models"


@pytest.mark.skipif(not SCORER.exists(), reason="needs target/release/scorer")
def test_fit_writes_a_loadable_set_that_keeps_the_base_ensemble(tmp_path):
    rng = np.random.default_rng(7)
    data = tmp_path / "history"
    data.mkdir()
    start = 1_759_276_800_000  # 2025-10-01
    with open(data / "windows.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tenant_id", "agent_id", "window_start", "tasks_total", "succeeded",
                    "tasks_with_intervention", "cost_micros", "latency_p50_ms", "latency_p95_ms"])
        for agent in ("a", "b", "c"):
            for t in range(6 * 86_400 // config.WINDOW_SECS):  # six days
                n = int(rng.poisson(12))
                p50 = float(rng.lognormal(8, 0.2)) if n else ""
                w.writerow(["acme", agent, start + t * config.WINDOW_MS, n, int(rng.binomial(n, 0.9)),
                            int(rng.binomial(n, 0.05)), n * 1000, p50, p50 * 3 if n else ""])
    out = tmp_path / "models"
    assert main(["fit", "--data", str(data), "--out", str(out), "--max-epochs", "1",
                 "--samples-per-epoch", "512", "--scorer", str(SCORER), "--base", str(BASE),
                 "--date", "2026.01.02"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    base = json.loads((BASE / "manifest.json").read_text())
    assert manifest["version"].startswith("2026.01.02-")
    assert manifest["version"] != base["version"]
    assert manifest["ensemble"] == base["ensemble"], "no tuning set: the base weights and threshold stay"
    for kind in ("lstm", "transformer"):
        cal = manifest["models"][kind]["calibration"]
        assert cal["scale"] > 0 and cal != {"loc": 0.0, "scale": 1.0, "eps": config.CALIBRATION_EPS}
        assert (out / manifest["models"][kind]["file"]).stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["lstm_ae.onnx", "manifest.json", "transformer_ae.onnx"]
