"""The server keeps what start-up made out of the garbage collector's full collections
(receiver/gc_tuning.py), and gives it back when it stops."""

from __future__ import annotations

import gc

import pytest
from starlette.testclient import TestClient

from receiver.app import app_from_env, create_app
from receiver.settings import Settings
from tests.conftest import API_KEY, TOKEN


def test_a_started_server_leaves_its_startup_objects_out_of_collections(
        settings: Settings) -> None:
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings, freeze_gc=True)) as client:
        assert client.get("/healthz").status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # modules, models, the app: start-up's objects
        assert gc.isenabled()  # what is made from now on is collected as usual
    assert gc.get_freeze_count() == 0


def test_an_app_made_for_tests_or_the_demo_leaves_the_collector_alone(
        settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0


def test_the_servers_factory_freezes(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"REPLYWINDOW_DATABASE_URL": settings.database_url,
                        "REPLYWINDOW_WEBHOOK_TOKEN": TOKEN, "REPLYWINDOW_API_KEYS": API_KEY,
                        "REPLYWINDOW_RUN_SCHEDULER": "false"}.items():
        monkeypatch.setenv(name, value)
    with TestClient(app_from_env()) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
