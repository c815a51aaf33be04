"""Opaque, tamper-evident keyset cursors for ListModelInvocationJobs."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

from outcrop.errors import ValidationError

_INVALID = "The nextToken is invalid or does not belong to this request's filters."


class CursorCodec:
    """Encodes (submit_us, job_id) plus a digest of the filters, signed with a server secret.

    Binding the cursor to the filters makes a token replayed with other filters an error rather
    than a silently wrong page; the HMAC makes a hand-edited token an error too.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]

    @staticmethod
    def _scope(account_id: str, filters: dict[str, str | None]) -> str:
        text = orjson.dumps([account_id, filters], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(text).hexdigest()[:16]

    def encode(
        self, account_id: str, filters: dict[str, str | None], after: tuple[int, str]
    ) -> str:
        payload = orjson.dumps({"a": list(after), "s": self._scope(account_id, filters)})
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def decode(
        self, token: str, account_id: str, filters: dict[str, str | None]
    ) -> tuple[int, str]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise ValidationError(_INVALID) from None
        payload, mac = raw[:-16], raw[-16:]
        if len(raw) <= 16 or not hmac.compare_digest(mac, self._mac(payload)):
            raise ValidationError(_INVALID)
        data = orjson.loads(payload)
        if data.get("s") != self._scope(account_id, filters):
            raise ValidationError(_INVALID)
        submit_us, job_id = data["a"]
        return int(submit_us), str(job_id)
