"""`replywindow templates sync/add` against the vendor simulator served on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner

from receiver.cli import main
from sender.simulator import VendorSimulator


@pytest.fixture
def sim_url() -> Iterator[tuple[VendorSimulator, str]]:
    sim = VendorSimulator()
    sim.add_approved_template("order_update", "en", "Order {{1}} has shipped")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(sim.app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield sim, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()


def env(db_url: str, base_url: str) -> dict[str, str]:
    return {"REPLYWINDOW_DATABASE_URL": db_url, "REPLYWINDOW_ITNIO_BASE_URL": base_url,
            "REPLYWINDOW_ITNIO_API_KEY": "sim-key", "REPLYWINDOW_ITNIO_API_SECRET": "sim-secret",
            "REPLYWINDOW_ITNIO_WA_APP_ID": "simWA001"}


def test_sync_brings_the_vendors_templates_into_the_store(
        db_url: str, sim_url: tuple[VendorSimulator, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _, base = sim_url
    result = CliRunner().invoke(main, ["templates", "sync"], env=env(db_url, base))

    assert result.exit_code == 0, result.output
    assert "1 templates synced" in result.output


def test_add_submits_a_template_for_review(db_url: str, sim_url: tuple[VendorSimulator, str],
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sim, base = sim_url
    template = tmp_path / "welcome.json"
    template.write_text(json.dumps({
        "templateName": "welcome_back", "type": 2, "language": "en",
        "components": {"body": {"type": "BODY", "text": "Welcome back!"},
                       "footer": {"type": "FOOTER", "text": "replywindow"}},
    }))

    result = CliRunner().invoke(main, ["templates", "add", str(template)], env=env(db_url, base))

    assert result.exit_code == 0, result.output
    assert [c.path for c in sim.calls] == ["/wa/template/add"]


def test_add_without_credentials_says_what_to_set(db_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    template = tmp_path / "t.json"
    template.write_text("{}")
    result = CliRunner().invoke(main, ["templates", "add", str(template)],
                                env={"REPLYWINDOW_DATABASE_URL": db_url})
    assert result.exit_code != 0
    assert "REPLYWINDOW_ITNIO_API_KEY" in result.output
