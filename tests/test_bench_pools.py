"""The bench's pool of distinct 云真机 bodies: big enough that no run sees a body twice."""

from __future__ import annotations

from pathlib import Path

from bench import payloads
from bench.cli import CEILING, UNMEASURED_CEILING, Bench, Row, parse_args


def _bench(tmp_path: Path, *args: str) -> Bench:
    return Bench(parse_args(["--loadgen", "python", "--duration", "0.2", *args]), tmp_path)


def test_without_a_ceiling_the_pool_covers_the_fastest_machine_seen(tmp_path: Path) -> None:
    # `--only webhooks-postgres` measures no ceiling; its pool once held 3,100 bodies, and a
    # run at 7,800/s applied one in six as a duplicate.
    bench = _bench(tmp_path, "--only", "webhooks-postgres")
    bench.prepare_pools()
    fastest_seen = 27_533  # acknowledged/s, the bare endpoint on the fastest machine so far
    assert UNMEASURED_CEILING > fastest_seen
    assert bench.pool_size >= payloads.YZJ_SHARE * fastest_seen * 1.25 * 0.2


def test_a_measured_ceiling_sizes_the_pool(tmp_path: Path) -> None:
    bench = _bench(tmp_path, "--only", "ceiling,webhooks-sqlite")
    bench.rows[CEILING] = Row(CEILING, acked_per_s=4_000.0)
    bench.prepare_pools()
    needed = payloads.YZJ_SHARE * 4_000 * 1.25 * 0.2
    assert needed <= bench.pool_size <= needed + bench.y_slots + 1
