"""Browser fixtures: a real `outcrop serve` with a slow echo model, and headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.server import OutcropServer, running_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SLOW_MODEL = "outcrop.slow-echo"
CATALOG = f"""
[[models]]
model_id = "{SLOW_MODEL}"
backend = "echo"
format = "anthropic-messages"
options = {{ latency_ms = 100 }}
description = "Echo, 100 ms per record"
"""


def require_browser() -> None:
    """Skip without Chromium or Playwright, except in CI (CI=true), where that is a failure."""
    missing = []
    if shutil.which(CHROMIUM) is None:
        missing.append(CHROMIUM)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        why = f"browser tests need {' and '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why, allow_module_level=True)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcropServer]:
    """A server whose slow model does ~50 records/s (shards of 5, one 100 ms call each), one
    shard at a time, so progress can be watched."""
    require_browser()
    root = tmp_path_factory.mktemp("console")
    catalog = root / "catalog.toml"
    catalog.write_text(CATALOG)
    with running_server(
        root / "data",
        OUTCROP_CATALOG=str(catalog),
        OUTCROP_SHARD_RECORDS="5",
        OUTCROP_MAX_SHARD_RECORDS="5",
        OUTCROP_SHARD_CONCURRENCY="1",
        OUTCROP_RECORD_CONCURRENCY="1",
        OUTCROP_PROGRESS_INTERVAL_S="0.2",
        OUTCROP_MAX_JOBS_PER_MODEL="4",
    ) as srv:
        for bucket in ("console-in", "console-out"):
            (srv.data_dir / "buckets" / bucket).mkdir(parents=True, exist_ok=True)
        yield srv


@pytest.fixture(scope="module")
def bedrock(console: OutcropServer) -> Any:
    return console.client()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait as long as actions do: a loaded CI machine can be slow to swap a fragment.
    expect.set_options(timeout=20_000)
    with sync_playwright() as pw:
        # launch() gives every browser a fresh temporary profile, removed on close.
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def dialogs() -> list[str]:
    """Messages of every JavaScript dialog (alert, confirm) the test's page opened."""
    return []


@pytest.fixture
def page(chromium: Any, dialogs: list[str]) -> Iterator[Any]:
    """A fresh browser context (no cookies) per test; any JavaScript dialog is recorded."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    pg = context.new_page()

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    yield pg
    context.close()


def sign_in(page: Any, server: OutcropServer, key_id: str, secret: str) -> None:
    page.goto(f"{server.endpoint}/console/signin")
    page.get_by_label("Access key id").fill(key_id)
    page.get_by_label("Secret access key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(page: Any, console: OutcropServer) -> Any:
    creds = console.credentials()
    sign_in(page, console, creds["access_key_id"], creds["secret_access_key"])
    page.wait_for_url(re.compile(r"/console/jobs$"))
    return page


def docs_path(name: str) -> Path:
    path = Path(__file__).resolve().parents[2] / "docs" / name
    path.parent.mkdir(exist_ok=True)
    return path
