"""The root account and its credentials: from the environment, or generated once and kept."""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from outcrop.config import CREDENTIALS_FILE, Settings
from outcrop.store.sql import SqlJobStore


@dataclass(frozen=True)
class Identity:
    account_id: str
    name: str
    access_key_id: str
    secret_access_key: str
    generated: bool = False


def new_account_id() -> str:
    return str(secrets.randbelow(9 * 10**11) + 10**11)


def new_access_key() -> tuple[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    key_id = "AKOC" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    return key_id, secret


def _write_private(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.chmod(path, 0o600)


def ensure_root_identity(settings: Settings, store: SqlJobStore) -> Identity:
    """Make sure the root account and its key exist; generate and store them on first start."""
    path = settings.data_dir / CREDENTIALS_FILE
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    account_id = (
        settings.account_id
        or stored.get("account_id")
        or store.meta_value("root_account_id", new_account_id)
    )
    generated = False
    if settings.root_access_key_id and settings.root_secret_access_key:
        key_id, secret = settings.root_access_key_id, settings.root_secret_access_key
    elif stored.get("access_key_id") and stored.get("secret_access_key"):
        key_id, secret = stored["access_key_id"], stored["secret_access_key"]
    else:
        existing = store.access_keys_of(account_id)
        key_id, secret = existing[0] if existing else new_access_key()
        generated = not existing
    store.ensure_account(account_id, "root")
    store.put_access_key(key_id, secret, account_id)
    record = {"account_id": account_id, "access_key_id": key_id, "secret_access_key": secret}
    if stored != record and not (settings.root_access_key_id and settings.root_secret_access_key):
        _write_private(path, record)
    elif not path.exists():
        _write_private(path, {"account_id": account_id})
    return Identity(account_id, "root", key_id, secret, generated)


def create_account(store: SqlJobStore, name: str) -> Identity:
    account_id = new_account_id()
    key_id, secret = new_access_key()
    store.ensure_account(account_id, name)
    store.put_access_key(key_id, secret, account_id)
    return Identity(account_id, name, key_id, secret, generated=True)
