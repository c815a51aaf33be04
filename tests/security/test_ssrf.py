"""Outbound requests to private addresses (SSRF): webhook targets and OpenAI-compatible backends.

With OUTCROP_ALLOW_PRIVATE_TARGETS=false a URL whose host is a private, loopback, link-local or
metadata address, written in any form the resolver takes without DNS (IP literals, legacy
numeric forms, `localhost`), stops `outcrop serve` at start with one clear line. A DNS name is
resolved at every delivery instead, and a private answer is refused there (docs/events.md).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from outcrop.netguard import ForbiddenAddress, check_url
from tests.acceptance.raw import RawClient
from tests.acceptance.webhook_receiver import WebhookReceiver
from tests.jobs import ROLE, wait_for
from tests.security.conftest import Servers, StartOutcome, serve_outcome

# Refused at start, each by a real `outcrop serve` (the forms the brief names).
PRIVATE_URLS = {
    "loopback-ip": "http://127.0.0.1:9/hook",
    "localhost": "http://localhost:9/hook",
    "metadata": "http://169.254.169.254/latest/meta-data/",
    # Not an IP literal to a URL parser, but the resolver maps it to 127.0.0.1 without DNS.
    "numeric-host": "http://2130706433:9/hook",
}
# More spellings of private hosts, checked against the same guard without starting a server.
MORE_PRIVATE_URLS = [
    "http://127.1/",
    "http://0x7f000001/",
    "http://LOCALHOST./",
    "http://tenant.localhost/",
    "http://0.0.0.0/",
    "http://10.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, IPv4-mapped
    "http://[fd00:ec2::254]/",  # AWS's IPv6 metadata address
    "http://100.100.100.200/",  # shared address space; Alibaba Cloud's metadata service
]


def assert_refused_at_start(outcome: StartOutcome, *fragments: str) -> None:
    assert outcome.returncode not in (None, 0), "serve started despite a private target"
    # stderr also carries the JSON log lines of the start (migrations); the error is the rest.
    lines = [line for line in outcome.stderr.splitlines() if line and not line.startswith("{")]
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("error:"), lines
    assert "Traceback" not in outcome.stderr + outcome.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("url", MORE_PRIVATE_URLS)
def test_other_spellings_of_private_hosts_are_refused_without_dns(url: str) -> None:
    with pytest.raises(ForbiddenAddress, match="private or loopback"):
        check_url(url, allow_private=False, resolve=False)
    check_url(url, allow_private=True, resolve=False)


def test_public_addresses_pass_the_guard() -> None:
    for url in ("http://8.8.8.8/", "https://[2606:4700:4700::1111]/", "http://1.1.1.1:8080/v1"):
        check_url(url, allow_private=False, resolve=False)


def test_the_numeric_host_resolves_to_loopback() -> None:
    """The premise of the "numeric-host" case, checked on this machine."""
    assert {info[4][0] for info in socket.getaddrinfo("2130706433", None)} == {"127.0.0.1"}


def _openai_catalog(path: Path, base_url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[[models]]\n"
        'model_id = "acme.private-llm-v1"\n'
        'backend = "openai"\n'
        'format = "openai-chat"\n'
        f'options = {{ base_url = "{base_url}", model = "m" }}\n'
    )
    return path


OPENAI_PRIVATE = ["http://127.0.0.1:8001/v1"]

# Every start below, by case name: (OUTCROP_ALLOW_PRIVATE_TARGETS or None, webhook, openai URL).
STARTS: dict[str, tuple[str | None, str | None, str | None]] = {
    **{f"webhook-refused-{n}": ("false", url, None) for n, url in PRIVATE_URLS.items()},
    "webhook-default-metadata": (None, PRIVATE_URLS["metadata"], None),
    "webhook-enabled-numeric-host": ("true", PRIVATE_URLS["numeric-host"], None),
    **{f"openai-refused-{i}": ("false", None, url) for i, url in enumerate(OPENAI_PRIVATE)},
    "openai-default": (None, None, OPENAI_PRIVATE[0]),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StartOutcome]:
    """Run every start at once (each is a separate `outcrop serve`), then let tests look."""

    dirs = {name: tmp_path_factory.mktemp(name) for name in STARTS}  # mktemp is not thread-safe

    def start(name: str) -> StartOutcome:
        allow, webhook, openai = STARTS[name]
        tmp = dirs[name]
        env = {}
        if allow is not None:
            env["OUTCROP_ALLOW_PRIVATE_TARGETS"] = allow
        if webhook is not None:
            env["OUTCROP_EVENT_WEBHOOK_URL"] = webhook
        if openai is not None:
            env["OUTCROP_CATALOG"] = str(_openai_catalog(tmp / "catalog.toml", openai))
        return serve_outcome(tmp / "data", env)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(STARTS, pool.map(start, STARTS), strict=True))


@pytest.mark.parametrize("name", PRIVATE_URLS)
def test_a_private_webhook_stops_serve_at_start(
    outcomes: dict[str, StartOutcome], name: str
) -> None:
    assert_refused_at_start(
        outcomes[f"webhook-refused-{name}"], "private or loopback", "OUTCROP_ALLOW_PRIVATE_TARGETS"
    )


@pytest.mark.parametrize(
    "name",
    ["webhook-default-metadata", "webhook-enabled-numeric-host"],
)
def test_private_webhooks_are_allowed_by_default_or_when_enabled(
    outcomes: dict[str, StartOutcome], name: str
) -> None:
    assert outcomes[name].returncode is None, outcomes[name].stderr


@pytest.mark.parametrize("index", range(len(OPENAI_PRIVATE)), ids=OPENAI_PRIVATE)
def test_a_private_openai_backend_stops_serve_at_start(
    outcomes: dict[str, StartOutcome], index: int
) -> None:
    assert_refused_at_start(
        outcomes[f"openai-refused-{index}"],
        "acme.private-llm-v1",
        "base_url",
        "private or loopback",
    )


def test_a_private_openai_backend_is_allowed_by_default(
    outcomes: dict[str, StartOutcome],
) -> None:
    assert outcomes["openai-default"].returncode is None, outcomes["openai-default"].stderr


# -- a DNS name that points at a private address: refused at delivery ---------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver(secret=None).start()
    yield hook
    hook.stop()


def _private_hostname() -> str:
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    if not all(ipaddress.ip_address(a).is_private for a in addresses):
        pytest.skip(f"{name!r} resolves to {addresses}, not (only) private addresses")
    return name


def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(
    servers: Servers, receiver: WebhookReceiver
) -> None:
    """Names are not resolved when the rules load (a DNS outage must not stop a start), so
    the server starts; every delivery re-resolves the name and refuses the private answer."""
    host = _private_hostname()
    server = servers.start(
        "ssrf-dns",
        OUTCROP_ALLOW_PRIVATE_TARGETS="false",
        OUTCROP_EVENT_WEBHOOK_URL=f"http://{host}:{receiver.port}/hook",
        OUTCROP_EVENT_RETRY_BASE_S="0.1",
        OUTCROP_EVENT_RETRY_MAX_S="0.5",
    )
    # Any job makes events; one whose input is missing fails validation quickly.
    server.client().create_model_invocation_job(
        jobName="ssrf-dns",
        roleArn=ROLE,
        modelId="outcrop.echo-v1",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://no-such-bucket/in.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://no-such-bucket/out/"}},
    )
    raw = RawClient.for_server(server)
    try:

        def refused() -> list[dict[str, Any]]:
            found = raw.request("GET", "/event-deliveries").json()["deliveries"]
            return [d for d in found if "private or loopback" in d.get("lastError", "")]

        deliveries = wait_for(refused, timeout=30)
    finally:
        raw.close()
    assert deliveries[0]["status"] in ("pending", "dead"), deliveries[0]
    assert receiver.attempts == 0, "the webhook was called despite resolving to a private address"
