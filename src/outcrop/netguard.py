"""Outbound URL checks: which hosts webhooks and model servers may reach."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class ForbiddenAddress(ValueError):
    """The URL is malformed or points at an address this server is configured not to reach."""


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def check_url(url: str, allow_private: bool, resolve: bool = True) -> None:
    """Raise ForbiddenAddress unless `url` is http(s) with a host that may be contacted.

    With `allow_private` false, every address the host resolves to must be public, so a name
    that points at 127.0.0.1 or 169.254.169.254 (cloud metadata) is refused as well.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenAddress(f"{url!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ForbiddenAddress("URLs with embedded credentials are not accepted")
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = [host] if _is_ip(host) else _resolve(host) if resolve else []
    except OSError as exc:
        raise ForbiddenAddress(f"cannot resolve {host}: {exc}") from None
    for address in addresses:
        if _is_private(address):
            raise ForbiddenAddress(
                f"{url} resolves to {address}, a private or loopback address; "
                "set OUTCROP_ALLOW_PRIVATE_TARGETS=true to allow it"
            )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
