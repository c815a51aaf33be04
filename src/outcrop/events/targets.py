"""Event targets: webhook (Standard Webhooks signatures), EventBridge PutEvents, and a JSONL log."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from outcrop.events.signing import webhook_headers
from outcrop.netguard import ForbiddenAddress, check_url


class DeliveryError(Exception):
    """This attempt failed; the dispatcher retries with backoff until the retry window ends."""


class Target(Protocol):
    name: str

    async def deliver(self, event: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


class WebhookTarget:
    """POST the event as JSON; 2xx is success, anything else (or no answer) is retried."""

    def __init__(
        self, name: str, url: str, secret: str | None, timeout_s: float, allow_private: bool
    ) -> None:
        check_url(url, allow_private, resolve=False)
        self.name = name
        self.url = url
        self.secret = secret
        self.allow_private = allow_private
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def deliver(self, event: dict[str, Any]) -> None:
        body = orjson.dumps(event)
        headers = {"content-type": "application/json", "user-agent": "outcrop-events/1"}
        if self.secret:
            headers |= webhook_headers(self.secret, event["id"], int(time.time()), body)
        else:
            headers |= {"webhook-id": event["id"], "webhook-timestamp": str(int(time.time()))}
        try:
            # Re-checked at delivery time: a name may have been re-pointed since configuration.
            if not self.allow_private:  # with private targets allowed there is nothing to resolve
                await asyncio.to_thread(check_url, self.url, self.allow_private)
            response = await self._client.post(self.url, content=body, headers=headers)
        except ForbiddenAddress as exc:
            raise DeliveryError(str(exc)) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code} from {self.url}")

    async def aclose(self) -> None:
        await self._client.aclose()


class EventBridgeTarget:
    """PutEvents to a bus through boto3 (real EventBridge or any compatible service).

    Real EventBridge refuses `aws.*` sources from PutEvents; set `source` (for example
    "outcrop.bedrock") when the bus is AWS's own.
    """

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        import boto3
        from botocore.config import Config

        self.name = name
        self.bus = str(options.get("event_bus_name", "default"))
        self.source = options.get("source")
        key_env, secret_env = options.get("access_key_id_env"), options.get("secret_access_key_env")
        self._client = boto3.client(
            "events",
            region_name=options.get("region", "us-east-1"),
            endpoint_url=options.get("endpoint_url"),
            aws_access_key_id=os.environ.get(key_env) if key_env else None,
            aws_secret_access_key=os.environ.get(secret_env) if secret_env else None,
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10),
        )

    def _put(self, event: dict[str, Any]) -> None:
        entry = {
            "Source": self.source or event["source"],
            "DetailType": event["detail-type"],
            "Detail": orjson.dumps(event["detail"]).decode(),
            "Resources": event["resources"],
            "EventBusName": self.bus,
        }
        try:
            result = self._client.put_events(Entries=[entry])
        except Exception as exc:  # botocore raises many kinds; each is one failed attempt
            raise DeliveryError(f"PutEvents failed: {exc}") from None
        if result.get("FailedEntryCount"):
            failure = result["Entries"][0]
            raise DeliveryError(
                f"PutEvents rejected the event: {failure.get('ErrorCode')} {failure.get('ErrorMessage')}"
            )

    async def deliver(self, event: dict[str, Any]) -> None:
        await asyncio.to_thread(self._put, event)

    async def aclose(self) -> None:
        self._client.close()


class LogTarget:
    """Append each event as one JSON line (fsync'd, so a delivered event is on disk)."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def _append(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            handle.write(orjson.dumps(event) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    async def deliver(self, event: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self._append, event)
        except OSError as exc:
            raise DeliveryError(f"cannot append to {self.path}: {exc}") from None

    async def aclose(self) -> None:
        return None
