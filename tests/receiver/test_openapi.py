"""GET /openapi.json describes the bot API, and the API keeps to it: schemathesis generates
requests from the served document (valid ones, and invalid ones) against a real uvicorn on
loopback, on SQLite and PostgreSQL. No 5xx; every status, content type, header and body as
documented; every 4xx a JSON {"error", "detail"}; invalid requests refused with a 4xx.

Counts are bounded; HYPOTHESIS_PROFILE=long for more (hostile_support.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route
from starlette.testclient import TestClient

from receiver import openapi
from receiver.app import create_app
from receiver.settings import Settings
from tests.conftest import API_KEY, DATA, TOKEN
from tests.receiver.hostile_support import examples, serve, with_openapi

AUTH = {"Authorization": f"Bearer {API_KEY}"}
BOT_API = {"/v1/messages", "/v1/messages/{id}", "/v1/windows",
           "/v1/windows/whatsapp/{business_phone}/{recipient}", "/v1/events", "/v1/templates",
           "/v1/reports/delivery", "/healthz", "/readyz"}


@pytest.fixture
def served(db_url: str) -> Iterator[str]:
    """The app under uvicorn on loopback, with a window open, an event, and a message."""
    settings = Settings(database_url=db_url, webhook_token=TOKEN, api_keys=API_KEY,
                        run_scheduler=False, _env_file=None)  # type: ignore[call-arg]
    with serve(with_openapi(create_app(settings))) as base:
        inbound = (DATA / "webhooks" / "itnio_wa_uplink_text.json").read_bytes()
        assert httpx.post(f"{base}/webhooks/itnio/whatsapp/{TOKEN}", content=inbound,
                          timeout=30).status_code == 200
        send = {"channel": "sms", "from": "91856321412", "to": "91856321432",
                "sms_text": "Your code is 1234"}
        assert httpx.post(f"{base}/v1/messages", json=send, headers=AUTH,
                          timeout=30).status_code == 202
        yield base


def error_shape(_ctx: Any, response: Any, _case: Any) -> bool | None:
    """Every 4xx is a JSON object with a string `error` and `detail`."""
    if 400 <= response.status_code < 500:
        body = json.loads(response.content)
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str) and body["error"], body
        assert isinstance(body.get("detail"), str) and body["detail"], body
    return None


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, error_shape]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_the_api_keeps_to_its_openapi_document(served: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    checks = CHECKS + ([negative_data_rejection] if mode.is_negative else [])

    @examples(150)
    @given(case=schema.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if case.query and case.operation.path == "/v1/events":
            wait = case.query.get("wait")  # a long poll would only make the run slow
            if isinstance(wait, int) and not isinstance(wait, bool) and 0 < wait <= 30:
                case.query["wait"] = 0
        # A generated key is replaced by a valid one, so the rest of the request is what is
        # tested; but a key generated invalid (the headers made negative), or left out, goes
        # as it is and must get its 401: replaced, the request could be valid after all and
        # rightly answered 200 (schemathesis still counts it as invalid).
        bad_key = case.meta is None or case.meta.is_negative_at(ParameterLocation.HEADER)
        given_key = "Authorization" in (case.headers or {})
        auth = AUTH if not mode.is_negative or (given_key and not bad_key) else None
        # A parameter given twice is read as its last value (as Starlette reads it), so a
        # repeated one may well be valid: only the other checks apply.
        repeated = any(isinstance(v, list) for v in (case.query or {}).values())
        case.call_and_validate(base_url=served, headers=auth, timeout=30,
                               checks=CHECKS if repeated else checks)

    run()


def test_the_document_is_served_and_covers_the_bot_api(client: TestClient) -> None:
    with_openapi(client.app)  # type: ignore[arg-type]
    response = client.get("/openapi.json")  # no key needed

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == BOT_API
    assert document["components"]["securitySchemes"]["bearer"] == {
        **document["components"]["securitySchemes"]["bearer"], "type": "http",
        "scheme": "bearer"}
    schemathesis.openapi.from_dict(document).validate()
    # Every documented error answers with the error shape.
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    name = answer["$ref"].rsplit("/", 1)[-1]
                    schema = document["components"]["responses"][name]["content"][
                        "application/json"]["schema"]
                    assert schema["$ref"].endswith(("/Error", "/Refusal")), (path, method)
    refusal = document["components"]["schemas"]["Refusal"]["allOf"][0]
    assert refusal == {"$ref": "#/components/schemas/Error"}
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "detail"]


def test_every_bot_route_of_the_app_is_documented(client: TestClient) -> None:
    documented = {path.replace("{id}", "{message_id}")
                  .replace("{business_phone}", "{business}") for path in openapi.PATHS}
    routed = {route.path for route in client.app.routes  # type: ignore[attr-defined]
              if isinstance(route, Route) and route.path.startswith("/v1/")}
    assert routed <= documented, routed - documented
