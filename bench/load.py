"""One load generator for every run: wrk with bench/wrk.lua, or (no wrk on the machine)
bench/pyload.py, a keep-alive raw-socket client in a process of its own. Both read the same
entries file and report the same numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import ROOT, OtherCpu, _clean_env

LUA = Path(__file__).with_name("wrk.lua")


@dataclass
class LoadResult:
    started: float  # wall clock when the load began
    duration_s: float
    requests: int
    status_errors: int  # responses over 399
    socket_errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    raw: dict[str, Any]
    other_cpu: float | None = None  # CPU (cores) other processes on the machine took meanwhile

    @property
    def ok(self) -> int:
        return self.requests - self.status_errors

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0


def which_wrk() -> str | None:
    return shutil.which("wrk")


def describe(kind: str) -> str:
    if kind == "wrk":
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        first = (out.stdout or out.stderr).strip().splitlines()
        return first[0].split(" Copyright")[0] if first else "wrk"
    return "bench.pyload (Python, asyncio raw sockets, keep-alive)"


def run_load(kind: str, url: str, entries: Path, *, duration: float, connections: int,
             threads: int, nonce: str, rate: float = 0.0, log: Path | None = None,
             timeout_s: int = 10) -> LoadResult:
    threads = max(1, min(threads, connections))
    if kind == "wrk":
        cmd = ["wrk", "-t", str(threads), "-c", str(connections),
               "-d", f"{max(1, round(duration))}s", "--timeout", f"{timeout_s}s",
               "-s", str(LUA), url, "--", str(entries), nonce, str(threads), f"{rate:.3f}"]
    else:
        cmd = [sys.executable, "-m", "bench.pyload", url, str(entries), "--duration",
               str(duration), "--connections", str(connections), "--nonce", nonce,
               "--threads", str(threads), "--rate", f"{rate:.3f}",
               "--timeout", str(timeout_s)]
    others = OtherCpu()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT,
                         env=_clean_env(), timeout=duration + timeout_s + 60)
    finished = time.time()
    other_cpu = others.share()
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}\n")
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"load generator failed ({out.returncode}): "
                           f"{(out.stderr or out.stdout)[-2000:]}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    socket_errors = (raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]
                     + raw["timeouts"])
    # The generator's own clock starts after it has read the entries file: the run began
    # `duration` before it exited.
    duration_s = raw["duration_us"] / 1e6
    return LoadResult(
        started=finished - duration_s, duration_s=duration_s, requests=raw["requests"],
        status_errors=raw["status_errors"], socket_errors=socket_errors,
        p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000, p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000, max_ms=raw["max_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000, raw=raw, other_cpu=other_cpu)
