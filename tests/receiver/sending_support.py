"""What the sending tests share: the simulator-backed settings, and the moves of a bot and of
the vendors (posting a reply, reading it back, the vendors' callbacks arriving)."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.testclient import TestClient

from receiver.settings import Settings
from sender.simulator import VendorSimulator
from tests.conftest import API_KEY, TOKEN, FakeClock

BUSINESS, CUSTOMER = "91856321412", "91856321432"
STAFF, WECOM_CUSTOMER = "1688851873049028", "7881302848173300"
YZJ_KEY = "replywindowTestVectorKey32bytes!"
TEXT = {"type": "text", "text": {"body": "Your order has shipped"}}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def simulator(clock: FakeClock) -> VendorSimulator:
    sim = VendorSimulator(clock=clock, yzj_aes_key=YZJ_KEY, webhook_token=TOKEN)
    sim.add_approved_template("order_update", "en", "Order {{1}} has shipped")
    return sim


def sim_settings(db_url: str, **overrides: Any) -> Settings:
    """Settings that point both vendors at the simulator."""
    return Settings(**{  # type: ignore[arg-type]
        "database_url": db_url, "webhook_token": TOKEN, "api_keys": API_KEY,
        "run_scheduler": False, "itnio_base_url": "http://sim", "itnio_api_key": "sim-key",
        "itnio_api_secret": "sim-secret", "itnio_wa_app_id": "simWA001",
        "itnio_sms_app_id": "simSMS01", "yzj_base_url": "http://sim", "yzj_app_id": "sim-yzj",
        "yzj_app_secret": "sim-yzj-secret", "yzj_encoding_aes_key": YZJ_KEY,
        "_env_file": None, **overrides,
    })


def deliver(sim: VendorSimulator, client: TestClient, *, reverse: bool = False) -> int:
    """Post the simulator's queued callbacks into replywindow, as the vendors would."""
    batch = list(sim.pending_callbacks)
    sim.pending_callbacks.clear()
    for callback in batch[::-1] if reverse else batch:
        response = client.post(f"{callback.url_path}/{TOKEN}", content=callback.body,
                               headers={"content-type": callback.content_type})
        assert response.status_code == 200, response.text
    return len(batch)


def customer_writes(sim: VendorSimulator, client: TestClient, clock: FakeClock) -> None:
    sim.customer_writes_whatsapp(BUSINESS, CUSTOMER, "hi", at=clock.now)
    deliver(sim, client)


def send(client: TestClient, headers: dict[str, str] | None = None,
         **body: Any) -> httpx.Response:
    payload = {"channel": "whatsapp", "from": BUSINESS, "to": CUSTOMER, "message": TEXT} | body
    return client.post("/v1/messages", json=payload, headers=AUTH if headers is None else headers)


def message(client: TestClient, message_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/messages/{message_id}", headers=AUTH)
    assert response.status_code == 200
    return dict(response.json())


def sender_of(client: TestClient) -> Any:
    return client.app_state["runtime"].sender


def deliver_due(client: TestClient) -> int:
    """What the scheduler's outbox job does every second."""
    return int(client.portal.call(sender_of(client).deliver_due))
