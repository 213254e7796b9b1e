"""A TestClient for an app whose webhooks are acknowledged before their effects are applied."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.testclient import TestClient


class SettlingClient(TestClient):
    """Starlette's TestClient; after each webhook request it applies what the request stored
    (the applier would, a moment later), so a test can read the effects straight away."""

    def request(self, method: str, url: httpx.URL | str, *args: Any,  # type: ignore[override]
                **kwargs: Any) -> httpx.Response:
        response = super().request(method, url, *args, **kwargs)
        runtime = self.app_state.get("runtime")
        if runtime is not None and "/webhooks/" in str(url):
            runtime.applier.settle()
        return response
