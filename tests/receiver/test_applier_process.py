"""The applier in its own process (the default): bodies acknowledged by the server are applied
by its child, which is started again should it die, and stops with the server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from receiver.app import create_app
from receiver.applier_process import _lines
from receiver.settings import Settings
from store.models import ChatMessage
from store.spool import Spool, path_for
from tests.conftest import DATA, TOKEN
from tests.settling import SettlingClient

WA = f"/webhooks/itnio/whatsapp/{TOKEN}"


def _children() -> list[int]:
    """This process's applier children, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"receiver.applier_process" in cmdline \
                and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def _uplink(n: int) -> bytes:
    return (DATA / "webhooks" / "itnio_wa_uplink_text.json").read_bytes().replace(
        b"wamid.HBgMOTE4NTYzMjE0MzIVAgASGBQzQUJD", f"wamid.{n}".encode())


def _chats(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(ChatMessage)).one())


def test_a_child_process_applies_is_restarted_when_killed_and_stops_with_the_server(
        settings: Settings, engine: Engine) -> None:
    settings = settings.model_copy(update={"applier": "process"})
    with SettlingClient(create_app(settings)) as client:
        assert client.post(WA, content=_uplink(1)).status_code == 200  # settles: applied
        assert _chats(engine) == 1
        [child] = _children()

        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (not _children() or _children() == [child]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children() and _children() != [child]  # another one took over

        assert client.post(WA, content=_uplink(2)).status_code == 200
        assert _chats(engine) == 2
    assert _children() == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the spool is SQLite's
def test_bodies_the_child_applied_are_deleted_from_the_spool_by_the_server(
        settings: Settings, engine: Engine) -> None:
    path = path_for(settings.database_url)
    assert path is not None
    settings = settings.model_copy(update={"applier": "process"})
    with SettlingClient(create_app(settings)) as client:
        for n in range(3):
            assert client.post(WA, content=_uplink(n)).status_code == 200  # settles: applied
        spool = Spool(path)
        applied = [row.id for row in spool.oldest_after(0, 10)]  # until the server deletes
        assert applied
        deadline, n = time.monotonic() + 20, 3
        while set(applied) & {row.id for row in spool.oldest_after(0, 10)}:
            assert time.monotonic() < deadline, "the applied bodies stayed in the spool"
            time.sleep(0.05)  # the child reports what it moved; the next batch deletes it
            assert client.post(WA, content=_uplink(n)).status_code == 200
            n += 1
        assert _chats(engine) == n
        spool.close()


def test_a_line_from_the_child_cut_by_a_read_is_read_whole_with_the_next() -> None:
    """The server reads the child's lines 4,096 bytes at a time: one cut there is kept until
    the rest arrives, and no id is misread from half of it."""
    stream = b"".join(b"m%d\n" % n for n in range(1_000_000, 1_001_000)) + b"a\n"
    assert 4096 % len(b"m1000000\n")  # 9-byte lines: reads end in the middle of one
    seen: list[bytes] = []
    partial = b""
    for start in range(0, len(stream), 4096):
        lines, partial = _lines(partial + stream[start:start + 4096])
        seen.extend(lines)
    assert partial == b""
    assert seen == stream.split(b"\n")[:-1]
