"""How the CLI reaches a server: endpoint, credentials, a boto3 client and signed plain requests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from outcrop.config import CREDENTIALS_FILE


class ClientSetupError(Exception):
    """No endpoint or no credentials could be found."""


@dataclass
class Connection:
    endpoint_url: str
    region: str
    session: boto3.Session

    @classmethod
    def resolve(
        cls,
        endpoint_url: str | None,
        profile: str | None,
        region: str,
        data_dir: Path,
        default_port: int,
    ) -> Connection:
        """Credentials from --profile or the standard AWS chain; else the local server's own."""
        endpoint = endpoint_url or f"http://127.0.0.1:{default_port}"
        stored = data_dir / CREDENTIALS_FILE
        explicit = profile or os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
        # Next to a local server with no AWS settings of its own, use the server's keys directly
        # (asking the whole AWS chain first would probe the EC2 metadata service for seconds).
        session = boto3.Session(profile_name=profile, region_name=region)
        if (not explicit and stored.exists()) or session.get_credentials() is None:
            try:
                data = json.loads(stored.read_text())
                session = boto3.Session(
                    aws_access_key_id=data["access_key_id"],
                    aws_secret_access_key=data["secret_access_key"],
                    region_name=region,
                )
            except (OSError, KeyError, ValueError):
                raise ClientSetupError(
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, use "
                    f"--profile, or run next to the server's data dir ({stored} not readable)"
                ) from None
        return cls(endpoint, region, session)

    def bedrock(self) -> Any:
        return self.session.client(
            "bedrock",
            endpoint_url=self.endpoint_url,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def s3(self, endpoint_url: str | None = None) -> Any:
        return self.session.client("s3", endpoint_url=endpoint_url)

    def _signed_headers(
        self, method: str, url: str, headers: dict[str, str] | None = None
    ) -> dict[str, str]:
        creds = self.session.get_credentials()
        assert creds is not None
        frozen = creds.get_frozen_credentials()
        request = AWSRequest(method=method, url=url, headers=headers or {})
        SigV4Auth(
            Credentials(frozen.access_key or "", frozen.secret_key or "", frozen.token),
            "bedrock",
            self.region,
        ).add_auth(request)
        return dict(request.headers.items())

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = str(httpx.URL(self.endpoint_url + path, params=params or {}))
        response = httpx.get(url, headers=self._signed_headers("GET", url), timeout=30)
        if response.status_code >= 400:
            message = (
                response.json().get("message", response.text)
                if response.content
                else response.reason_phrase
            )
            raise ClientSetupError(
                f"{response.headers.get('x-amzn-errortype', response.status_code)}: {message}"
            )
        return response.json()

    def stream_events(
        self, params: dict[str, str], last_event_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Follow /events/stream; yields each event's JSON."""
        url = str(httpx.URL(self.endpoint_url + "/events/stream", params=params))
        extra = {"last-event-id": last_event_id} if last_event_id else {}
        headers = self._signed_headers("GET", url, extra)
        with httpx.stream(
            "GET", url, headers=headers, timeout=httpx.Timeout(10, read=None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise ClientSetupError(
                    f"{response.headers.get('x-amzn-errortype')}: {response.text}"
                )
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    yield json.loads("\n".join(data))
                    data = []
