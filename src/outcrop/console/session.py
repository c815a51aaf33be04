"""Console sessions: a signed, HttpOnly cookie carrying the session id, account and CSRF token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from outcrop.store.sql import SqlJobStore

COOKIE_NAME = "outcrop_console"
COOKIE_PATH = "/console"
MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    """One browser's session; `account_id` is None until the user signs in."""

    session_id: str
    csrf_token: str
    account_id: str | None = None
    access_key_id: str | None = None
    key_hash: str | None = None  # ties the session to the secret it was opened with

    @property
    def signed_in(self) -> bool:
        return self.account_id is not None

    @classmethod
    def fresh(cls) -> Session:
        return cls(session_id=secrets.token_urlsafe(24), csrf_token=secrets.token_urlsafe(32))


class Sessions:
    """Reads, writes and checks session cookies; the cookie is the only session state.

    Each request re-checks the access key, so deleting or rotating a key ends its sessions.
    """

    def __init__(self, store: SqlJobStore, secret: str) -> None:
        self.store = store
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="outcrop-console-session")

    def _key_hash(self, secret_access_key: str) -> str:
        return hmac.new(self._secret, secret_access_key.encode(), hashlib.sha256).hexdigest()[:32]

    def load(self, request: Request) -> Session | None:
        """The request's session as the cookie says, or None (absent, forged or expired)."""
        raw = request.cookies.get(COOKIE_NAME)
        if not raw:
            return None
        try:
            data: Any = self._serializer.loads(raw, max_age=MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("sid", "csrf")
        ):
            return None
        return Session(
            session_id=data["sid"],
            csrf_token=data["csrf"],
            account_id=data.get("acct"),
            access_key_id=data.get("akid"),
            key_hash=data.get("kh"),
        )

    def signed_in(self, request: Request) -> Session | None:
        """The session if it belongs to a signed-in user whose key is still valid (blocking)."""
        session = self.load(request)
        if session is None or session.account_id is None or session.access_key_id is None:
            return None
        found = self.store.find_access_key(session.access_key_id)
        if found is None:
            return None
        secret, account_id = found
        if account_id != session.account_id or not hmac.compare_digest(
            self._key_hash(secret), session.key_hash or ""
        ):
            return None
        return session

    def sign_in(self, access_key_id: str, secret_access_key: str) -> Session | None:
        """Check the key pair (blocking); on success a brand-new session (never the old id)."""
        found = self.store.find_access_key(access_key_id)
        # Compare against a dummy when the key is unknown so both paths cost the same.
        expected, account_id = found if found is not None else (secrets.token_hex(20), "")
        if not hmac.compare_digest(expected.encode(), secret_access_key.encode()) or not found:
            return None
        fresh = Session.fresh()
        return Session(
            session_id=fresh.session_id,
            csrf_token=fresh.csrf_token,
            account_id=account_id,
            access_key_id=access_key_id,
            key_hash=self._key_hash(expected),
        )

    def write(self, response: Response, session: Session, request: Request) -> None:
        data: dict[str, str] = {"sid": session.session_id, "csrf": session.csrf_token}
        if session.account_id is not None:
            data |= {
                "acct": session.account_id,
                "akid": session.access_key_id or "",
                "kh": session.key_hash or "",
            }
        response.set_cookie(
            COOKIE_NAME,
            self._serializer.dumps(data),
            max_age=MAX_AGE_S,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="lax")


def csrf_ok(session: Session | None, submitted: str | None) -> bool:
    """The form's token matches the session's (constant time); no session never matches."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf_token.encode(), submitted.encode())
