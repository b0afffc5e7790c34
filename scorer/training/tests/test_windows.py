import json
import math

import numpy as np
import pytest

from agentops_train import config
from agentops_train.windows import aggregate, nearest_rank, parse_lines

W = config.WINDOW_MS
T0 = 1_759_276_800_000  # a window boundary


def ev(i, completed, latency=1000, status="SUCCEEDED", hi=0, cost=100, tenant="acme", agent="bot", eid=None):
    return json.dumps({
        "event_id": eid or f"e{i}", "task_id": f"t{i}", "tenant_id": tenant, "agent_id": agent,
        "status": status, "human_interventions": hi, "started_at": completed - latency,
        "completed_at": completed, "cost_micros": cost, "model": "m", "input_tokens": 1,
        "output_tokens": 2, "attributes": {"region": "eu"},
    })


def test_skips_malformed_invalid_and_duplicates():
    lines = [
        ev(1, T0 + 10),
        ev(1, T0 + 10),  # duplicate event_id: dropped
        '{"event": "x", "truncated": tru',  # does not parse
        "",
        ev(2, T0 + 20, status="DONE"),  # bad status
        ev(3, T0 + 30, cost=-1),  # negative cost
        ev(4, T0 + 40, hi=-1),  # negative interventions
        ev(5, T0 + 50, tenant=""),  # empty id
        ev(6, T0 + 60, latency=-5),  # completed before started
        ev(7, T0 + 70, status="FAILED", hi=2, cost=300),
    ]
    p = parse_lines([line.encode() for line in lines])
    assert p.stats == {"lines": 9, "unparsable": 1, "invalid": 5, "duplicates": 1, "events": 2}
    assert p.series == [("acme", "bot")]
    assert p.status.tolist() == [0, 1]


def test_invalid_event_does_not_shadow_a_valid_one_with_the_same_id():
    p = parse_lines([ev(1, T0, cost=-1, eid="same"), ev(2, T0, eid="same")])
    assert p.stats["events"] == 1 and p.stats["duplicates"] == 0


def test_tumbling_windows_counts_and_empty_windows():
    lines = [
        ev(1, T0 + 0, latency=100, hi=1, cost=10),
        ev(2, T0 + W - 1, latency=300, status="FAILED", cost=20),
        ev(3, T0 + W, latency=50, status="CANCELLED", hi=3, cost=30),  # exactly on the boundary: next window
        ev(4, T0 + 3 * W + 5, latency=70, agent="other"),
    ]
    w = aggregate(parse_lines(lines), W, period=(T0, T0 + 4 * W))
    assert w.series == [("acme", "bot"), ("acme", "other")]
    assert w.start_ms == T0 and w.n_slots == 4
    c = w.counts
    assert c["tasks_total"].tolist() == [[2, 1, 0, 0], [0, 0, 0, 1]]
    assert c["succeeded"][0].tolist() == [1, 0, 0, 0]
    assert c["failed"][0].tolist() == [1, 0, 0, 0]
    assert c["cancelled"][0].tolist() == [0, 1, 0, 0]
    assert c["tasks_with_intervention"][0].tolist() == [1, 1, 0, 0]
    assert c["interventions"][0].tolist() == [1, 3, 0, 0]
    assert c["cost_micros"][0].tolist() == [30, 30, 0, 0]
    assert w.quantiles["latency_p95_ms"][0, 0] == 300
    assert np.isnan(w.quantiles["latency_p95_ms"][0, 2])


def test_windows_csv_is_the_scorers_input(tmp_path):
    lines = [ev(1, T0 + 0, latency=100, hi=1, cost=10), ev(2, T0 + 2 * W, latency=300, status="FAILED", cost=20)]
    w = aggregate(parse_lines(lines), W, period=(T0, T0 + 3 * W))
    w.write_csv(tmp_path / "windows.csv")
    rows = (tmp_path / "windows.csv").read_text().splitlines()
    assert rows[0] == ("tenant_id,agent_id,window_start,tasks_total,succeeded,tasks_with_intervention,cost_micros,"
                       "latency_p50_ms,latency_p95_ms")
    assert rows[1] == f"acme,bot,{T0},1,1,1,10,100.0,100.0"
    assert rows[2] == f"acme,bot,{T0 + W},0,0,0,0,,", "an empty window: no latency"
    assert rows[3] == f"acme,bot,{T0 + 2 * W},1,0,0,20,300.0,300.0"


def test_quantiles_are_exact_nearest_rank():
    lat = [5, 1, 9, 3, 7, 2, 8, 6, 4, 10, 20, 11, 19, 12, 18, 13, 17, 14, 16, 15]
    lines = [ev(i, T0 + i, latency=v) for i, v in enumerate(lat)]
    w = aggregate(parse_lines(lines), W, period=(T0, T0 + W))
    assert w.quantiles["latency_p95_ms"][0, 0] == 19  # rank ceil(0.95 * 20) = 19
    assert w.quantiles["latency_p50_ms"][0, 0] == 10
    assert w.quantiles["latency_p99_ms"][0, 0] == 20
    s = np.sort(lat)
    assert nearest_rank(s, 0.95) == 19
    for n in (1, 2, 3, 7, 21, 100):
        vals = np.arange(1, n + 1)
        assert nearest_rank(vals, 0.95) == math.ceil(0.95 * n)
