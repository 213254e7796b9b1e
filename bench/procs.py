"""Servers as processes of their own: start, wait until they listen, watch their memory, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, all its threads (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """A process and its children (a server and its applier process)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rpartition(")")[2].split()[1]) == pid:
                    pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def family_cpu_seconds(pid: int) -> float | None:
    """`cpu_seconds` of a process and its children (None once it is gone)."""
    own = cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(cpu_seconds(child) or 0.0 for child in family(pid)[1:])


def family_kb(pid: int, field_name: str) -> int | None:
    """`proc_status_kb` summed over a process and its children."""
    own = proc_status_kb(pid, field_name)
    if own is None:
        return None
    return own + sum(proc_status_kb(child, field_name) or 0 for child in family(pid)[1:])


def _busy_seconds() -> float:
    """CPU seconds all processes have spent since boot (/proc/stat: user, nice, system; not
    interrupts, which no process is charged for, e.g. the loopback traffic's softirqs)."""
    with open("/proc/stat") as stat:
        user, nice, system = (int(v) for v in stat.readline().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


# What this machine's processes use at rest (kernel threads, the harness): the level a scenario
# waits for before it starts.
QUIET_CORES = 0.15


def wait_quiet(*, limit: float, window: float = 0.5) -> tuple[float, float]:
    """Wait, at most `limit` seconds, until the machine's processes use under QUIET_CORES of
    CPU over `window` seconds; (seconds waited, cores in use at the last look).

    One scenario should not pay for what the one before it left running: the kernel writing
    out its database files, PostgreSQL's checkpoint or autovacuum after a drop. Measured: the
    lookups' p99 at half rate was 2.0-2.2 ms right after the write-heavy scenarios, 1.45 ms
    run alone."""
    started = time.monotonic()
    os.sync()  # the dirty pages written now, not during the next measurement
    while True:
        before = _busy_seconds()
        time.sleep(window)
        busy = (_busy_seconds() - before) / window
        waited = time.monotonic() - started
        if busy < QUIET_CORES or waited >= limit:
            return waited, busy


def _postgres_seconds() -> float:
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        total += cpu_seconds(int(entry)) or 0.0
    return total


LIVE: set[int] = set()  # the pids of the servers this run has up


class OtherCpu:
    """How much CPU went to processes that are not this run's (servers, load generator,
    PostgreSQL, the harness) while it was measuring: another job on the machine skews the
    figures, and this says so. Processes that exit mid-run are counted as other work."""

    def __init__(self) -> None:
        import resource

        self._resource = resource
        self.wall = time.monotonic()
        self.busy = _busy_seconds()
        self.ours = self._ours()

    def _ours(self) -> float:
        own = os.times()
        children = self._resource.getrusage(self._resource.RUSAGE_CHILDREN)
        servers = sum(family_cpu_seconds(pid) or 0.0 for pid in LIVE)
        return (own.user + own.system + children.ru_utime + children.ru_stime + servers
                + _postgres_seconds())

    def share(self) -> float:
        """CPU seconds per second used by other processes since construction."""
        elapsed = time.monotonic() - self.wall
        others = (_busy_seconds() - self.busy) - (self._ours() - self.ours)
        return max(0.0, others / elapsed) if elapsed > 0 else 0.0


@dataclass
class MemoryWatch:
    """Samples a process's RSS and CPU time from /proc every `interval` seconds, in a thread."""

    pid: int
    interval: float = 0.2
    samples: list[tuple[float, int]] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = family_kb(self.pid, "VmRSS")
            cpu = family_cpu_seconds(self.pid)
            if rss is not None:
                self.samples.append((time.time(), rss))
            if cpu is not None:
                self.cpu.append((time.time(), cpu))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def rss_at(self, when: float) -> int | None:
        """The first sample at or after `when` (kB)."""
        return next((kb for t, kb in self.samples if t >= when),
                    self.samples[-1][1] if self.samples else None)

    def cpu_share(self, start: float, end: float) -> float | None:
        """CPU seconds per second (1.0: one core busy) between two samples around the run."""
        inside = [(t, c) for t, c in self.cpu if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def last(self) -> int | None:
        return self.samples[-1][1] if self.samples else None


def _clean_env() -> dict[str, str]:
    """The parent's environment without anything that would configure the servers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REPLYWINDOW_", "BENCH_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Server:
    """`python -m uvicorn TARGET --workers 1` on a free loopback port."""

    def __init__(self, name: str, target: str, *, workdir: Path, factory: bool = False,
                 env: dict[str, str] | None = None, http: str | None = None) -> None:
        self.name, self.target, self.factory = name, target, factory
        self.http = http  # uvicorn's --http: replywindow's servers run as `serve` runs them
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.env = {**_clean_env(), **(env or {})}
        # Its own working directory: no `.env` of the repository is read by accident.
        self.cwd = workdir / f"{name}.cwd"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_kb: int | None = None
        self.watch: MemoryWatch | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "uvicorn", self.target]
        if self.factory:
            cmd.append("--factory")
        if self.http:
            cmd += ["--http", self.http]
        # The same flags for every server. No access log: a line per request would be the
        # same cost everywhere, and it is not what is being compared.
        return [*cmd, "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                "--no-access-log", "--log-level", "warning"]

    def start(self, timeout: float = 60.0) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # the child keeps its own copy
        self.proc = subprocess.Popen(self.command(), cwd=self.cwd, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at start:\n"
                                   + self.log_tail())
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} did not listen within {timeout:.0f} s:\n"
                               + self.log_tail())
        self.watch = MemoryWatch(self.proc.pid)
        self.watch.start()
        LIVE.add(self.proc.pid)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        LIVE.discard(self.proc.pid)
        if self.proc.poll() is None:
            self.peak_rss_kb = family_kb(self.proc.pid, "VmHWM")
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.watch is not None:
            self.watch.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
