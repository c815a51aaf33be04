"""AWS Signature Version 4 verification, by recomputing the signature with botocore's own signer."""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from outcrop.errors import (
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
)

_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*"
)
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

KeyLookup = Callable[[str], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Caller:
    account_id: str
    access_key_id: str


class _KeyCache:
    """Short-lived cache of known keys: a signature check should not cost a database round trip."""

    def __init__(self, lookup: KeyLookup, ttl_s: float = 30.0) -> None:
        self._lookup = lookup
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def get(self, access_key_id: str) -> tuple[str, str] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(access_key_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        found = self._lookup(access_key_id)  # misses are not cached: new keys work at once
        if found is not None:
            with self._lock:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[access_key_id] = (now, found)
        return found


class SigV4Verifier:
    def __init__(
        self,
        lookup: KeyLookup,
        clock_skew_s: int = 900,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys = _KeyCache(lookup)
        self._skew = clock_skew_s
        self._now = now

    def verify(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> Caller:
        """Return the caller of a correctly signed request, or raise a typed 403."""
        header_map: dict[str, list[str]] = {}
        for name, value in headers:
            header_map.setdefault(name.lower(), []).append(value)
        authorization = (header_map.get("authorization") or [""])[0]
        if not authorization:
            raise MissingAuthenticationTokenError("Missing Authentication Token")
        match = _AUTH_RE.fullmatch(authorization.strip())
        if match is None:
            if authorization.lower().startswith("bearer "):
                raise UnrecognizedClientError(
                    "Bearer tokens are not accepted; sign requests with AWS Signature Version 4."
                )
            raise InvalidSignatureError(
                "Authorization header is not a valid AWS4-HMAC-SHA256 header."
            )
        credential = match["credential"].split("/")
        if len(credential) != 5 or credential[4] != "aws4_request":
            raise InvalidSignatureError("Credential must be KEY/DATE/REGION/SERVICE/aws4_request.")
        access_key_id, scope_date, region, service, _ = credential
        if service != "bedrock":
            raise InvalidSignatureError(
                f"Credential should be scoped to service 'bedrock', not '{service}'."
            )
        amz_date = (header_map.get("x-amz-date") or [""])[0]
        try:
            signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidSignatureError(
                "The request must carry an X-Amz-Date header in the form YYYYMMDDTHHMMSSZ."
            ) from None
        if scope_date != amz_date[:8]:
            raise InvalidSignatureError("Credential scope date does not match X-Amz-Date.")
        skew = abs((self._now() - signed_at).total_seconds())
        if skew > self._skew:
            raise InvalidSignatureError(
                f"Signature expired: {amz_date} is outside the allowed clock skew of "
                f"{self._skew // 60} minutes."
            )
        found = self._keys.get(access_key_id)
        if found is None:
            raise UnrecognizedClientError("The security token included in the request is invalid.")
        secret, account_id = found

        signed_names = match["signed"].lower().split(";")
        request = AWSRequest(
            method=method,
            url=f"http://{(header_map.get('host') or ['localhost'])[0]}{raw_path}"
            + (f"?{raw_query}" if raw_query else ""),
            data=body,
        )
        request.headers = HTTPHeaders()
        for name in signed_names:
            for value in header_map.get(name, []):
                request.headers[name] = value  # HTTPHeaders appends repeated names, as signed
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(access_key_id, secret), service, region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, match["signature"].lower()):
            raise InvalidSignatureError(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        return Caller(account_id=account_id, access_key_id=access_key_id)
