"""An in-process app on real SQLite files, with the dev inbox and a real SMTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from clave.bootstrap import Settings
from clave.platform.app import build_app
from clave.platform.lean import LeanApp
from clave.verify.bootstrap import VerifyDomain, verify_domain
from tests.support import HMAC_KEYS, SmtpServer, code_in


@dataclass
class Api:
    client: httpx.AsyncClient
    domain: VerifyDomain
    key: str
    # The same app without its lean routes: Litestar answers every request (tests/api/test_lean).
    framework: httpx.AsyncClient
    app: LeanApp

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return await self.client.post(path, json=body, headers=kw.pop("headers", self.auth), **kw)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=kw.pop("headers", self.auth), **kw)

    async def send(self, to: str, channel: str = "sms", **extra: Any) -> httpx.Response:
        return await self.post("/api/verifications", {"to": to, "channel": channel, **extra})

    async def check(self, code: str, **target: str) -> httpx.Response:
        """POST a check; `target` is id= or to=, and optionally client_ip=."""
        return await self.post("/api/verifications/check", {"code": code, **target})

    async def inbox(self, to: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Messages to `to` in the dev inbox, waiting for `count` to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            r = await self.client.get("/dev/inbox/messages", params={"to": to})
            messages: list[dict[str, Any]] = r.json()["messages"]
            if len(messages) >= count:
                return messages
            assert loop.time() < deadline, f"no {count} message(s) to {to}"
            await asyncio.sleep(0.02)

    async def code(self, to: str, count: int = 1) -> str:
        return code_in((await self.inbox(to, count))[0]["text"])


def settings_for(tmp_path: Path, smtp: SmtpServer | None = None, /, **extra: str) -> Settings:
    env = {
        "CLAVE_DATA_DIR": str(tmp_path),
        "CLAVE_DEV_INBOX": "true",
        "CLAVE_HMAC_KEYS": HMAC_KEYS,
        "CLAVE_OUTBOX_POLL": "0.05",
        "CLAVE_FRIENDLY_NAME": "Acme",
        **extra,
    }
    if smtp is not None:
        env |= {
            "CLAVE_SMTP_URL": smtp.url,
            "CLAVE_EMAIL_FROM": "Acme <no-reply@acme.example>",
            # Email goes to the real SMTP server; the dev inbox keeps the phone channels.
            "CLAVE_EMAIL_PROVIDERS": "smtp",
        }
    return Settings.load(env)


async def open_api(
    settings: Settings, clock: Callable[[], float] = time.time
) -> AsyncIterator[Api]:
    domain = verify_domain(settings.verify, settings.platform, clock=clock)
    app = build_app(settings.platform, [domain])
    # The app's lifespan and its requests on this test's event loop, as in a worker (Litestar's
    # test client would run the lifespan on a loop of its own). The lifespan lives in one task
    # of its own: pytest-asyncio sets a fixture up and tears it down in different tasks.
    ready, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.framework.lifespan():
            ready.set()
            await stop.wait()

    task = asyncio.create_task(lifespan())
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiting.cancel()
        task.result()  # start-up failed: raise its error
    try:
        transport = httpx.ASGITransport(app=app)
        bare = httpx.ASGITransport(app=app.framework)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://clave.test") as client,
            httpx.AsyncClient(transport=bare, base_url="http://clave.test") as framework,
        ):
            key = await domain.tenants.create_api_key("default")
            yield Api(client, domain, key, framework, app)
    finally:
        stop.set()
        await task


@pytest.fixture
async def api(tmp_path: Path, smtp: SmtpServer) -> AsyncIterator[Api]:
    async for value in open_api(settings_for(tmp_path, smtp)):
        yield value
