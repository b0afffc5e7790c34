import json
import math
from pathlib import Path

import numpy as np
import pytest

from agentops_train import config
from agentops_train.scoring import feature_errors, raw_score, verdict

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_feature_errors_use_last_positions_and_mask():
    L, F, P = config.SEQUENCE_LENGTH, config.N_FEATURES, config.SCORE_POSITIONS
    z = np.zeros((1, L, F), dtype=np.float32)
    r = np.zeros_like(z)
    m = np.ones_like(z)
    z[0, :L - P, :] = 100.0  # outside the scored positions: ignored
    z[0, -P:, 0] = [1, 2, 3, 4]
    m[0, -1, 0] = 0  # the last value of feature 0 is undefined
    m[0, -P:, 1] = 0  # feature 1 undefined everywhere: e is undefined and left out of the mean
    z[0, -P:, 1] = 5.0
    z[0, -2:, 4] = 2.0
    e = feature_errors(z, m, r, P)
    assert np.isnan(e[0, 1])
    assert np.nan_to_num(e[0]).tolist() == [(1 + 4 + 9) / 3, 0.0, 0.0, 0.0, 8 / 4, 0.0]
    assert raw_score(e)[0] == pytest.approx((14 / 3 + 2) / 5)
    assert raw_score(np.full((1, 6), np.nan))[0] == 0.0


def test_verdict_is_the_rust_formula():
    manifest = {"models": {"lstm": {"calibration": {"loc": 2.0, "scale": 1.0, "eps": 1e-6}},
                           "transformer": {"calibration": {"loc": 0.0, "scale": 2.0, "eps": 1e-6}}},
                "ensemble": {"weights": {"lstm": 0.5, "transformer": 0.0, "statistical": 0.5}, "threshold": 3.0}}
    e_l = np.array([0.0, 0.0, 6 * (math.exp(3.0) - 1e-6), 0.0, 0.0, 0.0])  # raw = e^3 - eps: calibrated 1.0
    e_t = np.zeros(6)
    v = verdict(e_l, e_t, 5.0, np.array([4.0, 0.0, 0.0, 0.0, 0.0, 1.0]), True, manifest)
    assert v["lstm_normalized"] == pytest.approx(1.0)
    assert v["ensemble"] == pytest.approx(3.0)  # (0.5 * 1 + 0.5 * 5) / 1
    assert v["is_anomaly"]
    assert v["contributions"] == pytest.approx([0.4, 0.0, 0.5, 0.0, 0.0, 0.1])
    assert not verdict(e_l, e_t, 5.0, np.zeros(6), False, manifest)["is_anomaly"], "a cold series never alarms"


@pytest.mark.skipif(not (MODELS / "reference.json").exists(), reason="no committed models")
def test_reference_cases_match_the_committed_models():
    pytest.importorskip("onnxruntime")
    from agentops_train.scoring import OnnxModel

    manifest = json.loads((MODELS / "manifest.json").read_text())
    ref = json.loads((MODELS / "reference.json").read_text())
    lstm = OnnxModel(MODELS / manifest["models"]["lstm"]["file"])
    tr = OnnxModel(MODELS / manifest["models"]["transformer"]["file"])
    assert len(ref["cases"]) >= 8
    assert any(v is None for c in ref["cases"] for row in c["rows"] for v in row)
    for case in ref["cases"]:
        z = np.array([[0.0 if v is None else v for v in row] for row in case["rows"]], dtype=np.float32)[None]
        m = np.array([[0.0 if v is None else 1.0 for v in row] for row in case["rows"]], dtype=np.float32)[None]
        st = case["statistical_input"]
        got = verdict(feature_errors(z, m, lstm.reconstruct(z))[0], feature_errors(z, m, tr.reconstruct(z))[0],
                      st["score"], np.array(st["evidence"]), st["warm"], manifest)
        for key in ("lstm_raw", "transformer_raw", "lstm_normalized", "transformer_normalized", "ensemble"):
            assert got[key] == pytest.approx(case[key], abs=1e-4), (case["name"], key)
        assert got["is_anomaly"] == case["is_anomaly"]
        assert got["contributions"] == pytest.approx(case["contributions"], abs=1e-4)
