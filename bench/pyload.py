"""The fallback load generator, for machines without wrk: keep-alive HTTP/1.1 over raw
asyncio sockets, the same entries file as bench/wrk.lua, the same "BENCHJSON {...}" line.

    python -m bench.pyload URL ENTRIES --duration 10 --connections 32 --nonce 71 [--rate 500]

Runs in its own process (the harness starts it) so that it does not share the server's.
Latency is measured per request, from the first byte written to the last byte read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Entry:
    kind: str
    head: bytes  # request line and headers, up to the blank line, without Content-Length
    before: bytes = b""
    after: bytes = b""


class Source:
    def __init__(self, path: Path, host: str, nonce: str) -> None:
        self.entries: list[Entry] = []
        self.pool: list[bytes] = []
        self.nonce = nonce
        self.i = self.j = 0
        headers: list[tuple[str, str]] = []
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
        for f in rows:
            if f[0] == "H":
                headers.append((f[1], f[2]))
            elif f[0] == "P":
                self.pool.append(f[1].encode())
        for f in rows:
            if f[0] not in ("T", "F", "Y"):
                continue
            lines = [f"{f[1]} {f[2]} HTTP/1.1", f"Host: {host}"]
            lines += [f"{k}: {v}" for k, v in headers]
            if f[3]:
                lines.append(f"Content-Type: {f[3]}")
            head = "\r\n".join(lines).encode()
            before = f[4].encode() if len(f) > 4 else b""
            after = f[5].encode() if len(f) > 5 else b""
            self.entries.append(Entry(f[0], head, before, after))

    def next_request(self) -> bytes:
        self.i += 1
        e = self.entries[(self.i - 1) % len(self.entries)]
        if e.kind == "T":
            body = e.before + f"{self.nonce}00{self.i:09d}".encode() + e.after
        elif e.kind == "Y":
            self.j += 1
            body = self.pool[(self.j - 1) % len(self.pool)]
        else:
            body = e.before
        if not body and e.head.startswith(b"GET "):
            return e.head + b"\r\n\r\n"
        return e.head + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


@dataclass
class Tally:
    requests: int = 0
    status_errors: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    timeouts: int = 0


CATCH_UP = 1.0  # seconds


class Pacer:
    """Send slots at `rate` a second, handed to whichever connection is ready (as wrk.lua)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at: float | None = None

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        # Missed slots are made up as connections come free; only those over CATCH_UP late
        # are given up (as wrk.lua).
        if self.next_at is None or self.next_at < now - CATCH_UP:
            self.next_at = now
        slot, self.next_at = self.next_at, self.next_at + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


async def _connection(host: str, port: int, source: Source, deadline: float, pacer: Pacer,
                      timeout: float, latencies: list[float], tally: Tally) -> None:
    reader = writer = None
    while time.monotonic() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                tally.connect_errors += 1
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        await pacer.wait()
        request = source.next_request()
        started = time.perf_counter()
        try:
            writer.write(request)
            status, close = await asyncio.wait_for(_read_response(reader), timeout)
        except TimeoutError:
            tally.timeouts += 1
            writer.close()
            writer = None
            continue
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            tally.read_errors += 1
            writer.close()
            writer = None
            continue
        if time.monotonic() > deadline:
            break
        latencies.append(time.perf_counter() - started)
        tally.requests += 1
        if status > 399:
            tally.status_errors += 1
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


async def _main(args: argparse.Namespace) -> dict[str, float]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    source = Source(Path(args.entries), f"{host}:{port}", args.nonce)
    latencies: list[float] = []
    tally = Tally()
    pacer = Pacer(args.rate)
    started = time.monotonic()
    deadline = started + args.duration
    await asyncio.gather(*(
        _connection(host, port, source, deadline, pacer, args.timeout, latencies, tally)
        for _ in range(args.connections)))
    elapsed = time.monotonic() - started
    values = sorted(latencies)
    us = [v * 1e6 for v in values]
    return {
        "duration_us": int(elapsed * 1e6), "requests": tally.requests, "bytes": 0,
        "connect_errors": tally.connect_errors, "read_errors": tally.read_errors,
        "write_errors": 0, "status_errors": tally.status_errors, "timeouts": tally.timeouts,
        "p50_us": _percentile(us, 50), "p90_us": _percentile(us, 90),
        "p99_us": _percentile(us, 99), "p999_us": _percentile(us, 99.9),
        "max_us": us[-1] if us else 0, "mean_us": sum(us) / len(us) if us else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pyload")
    parser.add_argument("url")
    parser.add_argument("entries")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)  # accepted for wrk's sake; one loop
    parser.add_argument("--nonce", default="1")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s in all; 0: flat out")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(_main(args))
    else:
        result = uvloop.run(_main(args))
    print("BENCHJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
