"""Outbound URL checks: which hosts webhooks and model servers may reach."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class ForbiddenAddress(ValueError):
    """The URL is malformed or points at an address this server is configured not to reach."""


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # `not is_global` also covers shared space such as 100.64.0.0/10 (Alibaba Cloud's metadata
    # service is 100.100.100.200), which is neither private nor public.
    return bool(
        not ip.is_global
        or ip.is_private
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
    literal = _literal_address(host)
    try:
        addresses = [literal] if literal else _resolve(host) if resolve else []
    except OSError as exc:
        raise ForbiddenAddress(f"cannot resolve {host}: {exc}") from None
    for address in addresses:
        if _is_private(address):
            raise ForbiddenAddress(
                f"{url} resolves to {address}, a private or loopback address; "
                "set OUTCROP_ALLOW_PRIVATE_TARGETS=true to allow it"
            )


def _literal_address(host: str) -> str | None:
    """The address `host` names without a lookup: an IP literal, or loopback for localhost.

    IPv4 in the legacy forms the resolver also accepts (2130706433, 0x7f000001, 127.1) counts as
    a literal, and so do `localhost` and `*.localhost` (RFC 6761), so these are refused even
    where names are not resolved (at configuration load).
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        pass
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return "127.0.0.1"
    return None


def _resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
