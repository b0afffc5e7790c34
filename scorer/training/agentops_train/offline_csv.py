"""Per-series CSV files for the Rust scorer's offline mode.

For each series `<tenant>__<agent>.csv`:
    timestamp,success_rate,intervention_rate,log_p95_latency_ms,log_cost_per_task_micros,log_tasks
    1759276800000,0.9166666666666666,0.08333333333333333,8.6,7.3,2.56
    ...
(timestamp = window start, epoch ms UTC; an empty cell = undefined feature) and
`<tenant>__<agent>.labels.json`: `[{"start": <ms>, "end": <ms>}, ...]` (the incidents, empty for
clean series). `index.json` lists the series with their files, control flag and incident kinds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import config
from .data import Dataset


def _cell(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def write_offline(ds: Dataset, out: Path) -> list[dict]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    starts = ds.windows.window_starts()
    index = []
    for i, (tenant, agent) in enumerate(ds.series):
        stem = f"{tenant}__{agent}"
        lines = ["timestamp," + ",".join(config.FEATURES)]
        for t in range(len(starts)):
            lines.append(f"{int(starts[t])}," + ",".join(_cell(v) for v in ds.x[i, t]))
        (out / f"{stem}.csv").write_text("\n".join(lines) + "\n")
        incs = ds.incidents_of((tenant, agent))
        labels = [{"start": int(x["start_ms"]), "end": int(x["end_ms"])} for x in incs]
        (out / f"{stem}.labels.json").write_text(json.dumps(labels) + "\n")
        index.append({
            "series": f"{tenant}/{agent}",
            "csv": f"{stem}.csv",
            "labels": f"{stem}.labels.json",
            "control": (tenant, agent) in ds.control,
            "kinds": [x["kind"] for x in incs],
        })
    (out / "index.json").write_text(json.dumps({"dataset": ds.name, "window_secs": config.WINDOW_SECS,
                                                "series": index}, indent=1) + "\n")
    return index
