import json
import math
from pathlib import Path

import numpy as np
import pytest

from agentops_train import config
from agentops_train.evaluate import SeriesScores, sweep
from agentops_train.scoring import Calibration, contributions, ensemble, feature_errors, raw_score

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_feature_errors_use_last_positions_and_mask():
    L, F, P = config.SEQUENCE_LENGTH, config.N_FEATURES, config.SCORE_POSITIONS
    z = np.zeros((1, L, F), dtype=np.float32)
    r = np.zeros_like(z)
    m = np.ones_like(z)
    z[0, :L - P, :] = 100.0  # outside the scored positions: ignored
    z[0, -P:, 0] = [1, 2, 3, 4]
    m[0, -1, 0] = 0  # the last value of feature 0 is undefined
    m[0, -P:, 1] = 0  # feature 1 undefined everywhere: e = 0, still counts in the mean
    z[0, -P:, 1] = 5.0
    z[0, -2:, 4] = 2.0
    e = feature_errors(z, m, r, P)
    assert e[0].tolist() == [(1 + 4 + 9) / 3, 0.0, 0.0, 0.0, 8 / 4]
    assert raw_score(e)[0] == pytest.approx((14 / 3 + 2) / 5)


def test_calibration_ensemble_and_contributions():
    raw = np.exp(np.array([0.0, 1.0, 2.0, 3.0, 4.0])) - 1e-6
    c = Calibration.fit(raw)
    assert c.loc == pytest.approx(2.0) and c.scale == pytest.approx(1.4826 * 1.0)
    assert c.apply(np.array([math.exp(2.0) - 1e-6]))[0] == pytest.approx(0.0)
    assert ensemble(np.array([1.0]), np.array([4.0]), 0.25, 0.75)[0] == pytest.approx(3.25)
    el = np.array([[1.0, 1.0, 0.0, 0.0, 2.0], [0, 0, 0, 0, 0]])
    et = np.array([[0.0, 0.0, 0.0, 3.0, 1.0], [0, 0, 0, 0, 0]])
    c = contributions(el, et, 0.5, 0.5)
    assert c[0].tolist() == pytest.approx([0.125, 0.125, 0.0, 0.375, 0.375])
    assert c[0].sum() == pytest.approx(1.0) and c[1].sum() == 0.0
    c = contributions(el[:1], et[1:], 1.0, 3.0)  # a model with zero error sum contributes 0
    assert c[0].tolist() == pytest.approx([0.0625, 0.0625, 0.0, 0.0, 0.125])


def test_event_level_counting():
    W = config.WINDOW_MS
    starts = np.arange(20, dtype=np.int64) * W
    s = np.zeros(20)
    s[:3] = np.nan
    s[[5, 6, 7, 12, 14, 15]] = 5.0
    inc = [{"kind": "x", "start_ms": 12 * W + 10, "end_ms": 14 * W + 5}]
    items = [SeriesScores("d", ("a", "b"), starts, s, inc, False),
             SeriesScores("d", ("a", "c"), starts, np.where(np.arange(20) == 10, 9.0, 0.0), [], True)]
    r = sweep(items, np.array([1.0, 6.0]))
    assert r["alarms"].tolist() == [4, 1]  # runs 5-7, 12, 14-15 and the control one; then the control one
    assert r["tp_alarms"].tolist() == [2, 0]  # 12 and 14-15 overlap the incident
    assert r["recall"].tolist() == [1.0, 0.0]
    assert r["delays_min"][0, 0] == pytest.approx((13 * W - (12 * W + 10)) / 60_000)
    assert r["control_alarms"].tolist() == [1, 1]


@pytest.mark.skipif(not (MODELS / "reference.json").exists(), reason="no committed models")
def test_reference_cases_match_the_committed_models():
    pytest.importorskip("onnxruntime")
    from agentops_train.artifacts import score_case
    from agentops_train.scoring import OnnxModel

    manifest = json.loads((MODELS / "manifest.json").read_text())
    ref = json.loads((MODELS / "reference.json").read_text())
    lstm = OnnxModel(MODELS / manifest["models"]["lstm"]["file"])
    tr = OnnxModel(MODELS / manifest["models"]["transformer"]["file"])
    assert len(ref["cases"]) >= 8
    assert any(v is None for c in ref["cases"] for row in c["raw_features"] for v in row)
    for case in ref["cases"]:
        raw = np.array([[np.nan if v is None else v for v in row] for row in case["raw_features"]])
        got = score_case(raw, manifest, lstm, tr)
        for key in ("lstm_raw", "transformer_raw", "lstm_normalized", "transformer_normalized", "ensemble"):
            assert got[key] == pytest.approx(case[key], abs=1e-4), (case["name"], key)
        assert got["is_anomaly"] == case["is_anomaly"]
        assert got["contributions"] == pytest.approx(case["contributions"], abs=1e-4)
        assert sum(case["contributions"]) == pytest.approx(1.0, abs=1e-6) or sum(case["contributions"]) == 0
