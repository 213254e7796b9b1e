"""The benchmark is not a test, but it must keep working: `python -m bench --smoke` runs every
scenario for about a second (the sustained webhook run for two; real servers, real load
generator: wrk, or bench/pyload.py where wrk is not installed) and must print its table.
PostgreSQL rows run when PostgreSQL answers (TEST_DATABASE_URL), and say "skipped" otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_prints_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYWINDOW_")}
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for name in SCENARIOS:
        assert name in done.stdout, f"{name!r} missing from the table:\n{done.stdout}"
    results = json.loads(out.read_text())
    rows = {row["name"]: row for row in results["scenarios"]}
    assert set(rows) == set(SCENARIOS)
    for name in SCENARIOS:
        if rows[name]["status"] == "ok":
            assert rows[name]["acked_per_s"] > 0, rows[name]
    assert rows[SCENARIOS[0]]["status"] == "ok"
    # The paced rows say what pace they were given; the sustained run sampled its backlog.
    for name in SCENARIOS:
        if ("rate" in name or "pace" in name) and rows[name]["status"] == "ok":
            assert rows[name]["detail"]["target_per_s"] > 0, rows[name]
    sustained = next(rows[name] for name in SCENARIOS if "paced" in name)
    assert sustained["status"] == "ok", sustained
    assert sustained["detail"]["target_per_s"] > 0
    assert len(sustained["detail"]["backlog_samples"]) >= 2
    assert sustained["detail"]["backlog_end"] is not None
    assert any("backlog" in note for note in sustained["notes"])
