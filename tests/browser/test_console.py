"""The web console in headless Chromium against a real `outcrop serve`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.raw import create_account
from tests.browser.conftest import SLOW_MODEL, docs_path, require_browser, sign_in
from tests.jobs import create_job, wait_for_terminal, write_jsonl
from tests.server import OutcropServer

from outcrop.domain.jobs import Tag
from outcrop.store.database import create_db_engine
from outcrop.store.sql import SqlJobStore

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

ECHO = "outcrop.echo-v1"
OUT = "s3://console-out/results/"
LIVE_BADGE = "#job-live .status-line .badge"
LIVE_BAR = "#job-live [role=progressbar]"
PROCESSED_ABOVE = """([selector, floor]) => {
    const bar = document.querySelector(selector);
    return bar !== null && Number(bar.dataset.processed) > floor;
}"""
MID_RUN = """(selector) => {
    const bar = document.querySelector(selector);
    if (bar === null || bar.dataset.total === "") return false;
    const processed = Number(bar.dataset.processed);
    return processed > 0 && processed < Number(bar.dataset.total);
}"""


def put_input(server: OutcropServer, name: str, count: int, text: str = "hello") -> str:
    write_jsonl(
        server.data_dir / "buckets" / "console-in" / f"{name}.jsonl",
        (
            {
                "recordId": f"R{i:06d}",
                "modelInput": {
                    "anthropic_version": "bedrock-2023-05-31",
                    "max_tokens": 32,
                    "messages": [{"role": "user", "content": f"{text} {i}"}],
                },
            }
            for i in range(count)
        ),
    )
    return f"s3://console-in/{name}.jsonl"


def job_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def url(server: OutcropServer, path: str) -> str:
    return f"{server.endpoint}/console{path}"


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "the page has no CSRF field"
    return match[1]


# -- signing in ---------------------------------------------------------------------------


def test_sign_in_refuses_a_wrong_secret_and_signs_out(page: Any, console: OutcropServer) -> None:
    creds = console.credentials()
    page.goto(url(console, "/jobs"))
    expect(page).to_have_url(re.compile(r"/console/signin\?next="))

    sign_in(page, console, creds["access_key_id"], "not-the-secret")
    expect(page.get_by_role("alert")).to_have_text(
        "The access key id or secret access key is not correct."
    )
    expect(page.get_by_role("heading", name="Batch inference jobs")).to_have_count(0)

    sign_in(page, console, creds["access_key_id"], creds["secret_access_key"])
    expect(page.get_by_role("heading", name="Batch inference jobs")).to_be_visible()
    expect(page.get_by_test_id("account-id")).to_have_text(creds["account_id"])
    cookie = next(c for c in page.context.cookies() if c["name"] == "outcrop_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(url(console, "/jobs"))
    expect(page).to_have_url(re.compile(r"/console/signin"))


def test_keyboard_reaches_sign_in_form(page: Any, console: OutcropServer) -> None:
    creds = console.credentials()
    page.goto(url(console, "/signin"))
    page.keyboard.press("Tab")
    expect(page.get_by_label("Access key id")).to_be_focused()
    page.keyboard.type(creds["access_key_id"])
    page.keyboard.press("Tab")
    expect(page.get_by_label("Secret access key")).to_be_focused()
    page.keyboard.type(creds["secret_access_key"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Batch inference jobs")).to_be_visible()


# -- the jobs list ------------------------------------------------------------------------


def test_list_shows_api_jobs_and_filters_them(
    signed_in: Any, console: OutcropServer, bedrock: Any
) -> None:
    page = signed_in
    names = ["list-alpha-1", "list-alpha-2", "list-beta-1"]
    arns = [create_job(bedrock, n, ECHO, put_input(console, n, 3), OUT) for n in names]
    for arn in arns:
        wait_for_terminal(bedrock, arn)

    page.goto(url(console, "/jobs"))
    for name in names:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    row = page.locator(f'tr[data-job-id="{job_id(arns[0])}"]')
    expect(row.locator(".badge")).to_have_text("Completed")
    expect(row.get_by_role("cell", name=ECHO)).to_be_visible()
    expect(row.get_by_role("progressbar")).to_have_attribute("data-processed", "3")
    expect(row.get_by_role("progressbar")).to_have_attribute("data-total", "3")

    page.get_by_label("Name contains").fill("list-alpha")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("link", name="list-alpha-1", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="list-alpha-2", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="list-beta-1", exact=True)).to_have_count(0)

    page.get_by_label("Name contains").fill("list-")
    page.get_by_label("Sort by creation time").select_option("asc")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#job-rows tr th a")).to_have_text(names)

    page.get_by_label("Status", exact=True).select_option("Failed")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No jobs match these filters.")).to_be_visible()

    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    page.get_by_label("Status", exact=True).select_option("")
    page.get_by_label("Submitted after").fill(later)
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No jobs match these filters.")).to_be_visible()
    page.get_by_label("Submitted after").fill("")
    page.get_by_label("Submitted before").fill(later)
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#job-rows tr th a")).to_have_text(names)


def test_pages_fit_a_phone_screen(signed_in: Any, console: OutcropServer, bedrock: Any) -> None:
    page = signed_in
    arn = create_job(bedrock, "phone-sized", ECHO, put_input(console, "phone", 2), OUT)
    wait_for_terminal(bedrock, arn)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/jobs", f"/jobs/{job_id(arn)}", "/jobs/new"):
        page.goto(url(console, path))
        expect(page.get_by_role("navigation", name="Console")).to_be_visible()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"


def test_progress_advances_live_on_list_and_details(
    signed_in: Any, console: OutcropServer, bedrock: Any
) -> None:
    page = signed_in
    arn = create_job(bedrock, "live-progress", SLOW_MODEL, put_input(console, "live", 300), OUT)
    page.goto(url(console, "/jobs"))
    row_bar = f'tr[data-job-id="{job_id(arn)}"] [role=progressbar]'
    # No reload from here on: the rows change only through the live stream.
    page.wait_for_function(MID_RUN, arg=row_bar, timeout=30_000)
    page.screenshot(path=str(docs_path("console-list.png")), full_page=True)

    page.get_by_role("link", name="live-progress", exact=True).click()
    expect(page.get_by_role("heading", name="live-progress", level=1)).to_be_visible()
    page.wait_for_function(MID_RUN, arg=LIVE_BAR, timeout=30_000)
    first = int(page.locator(LIVE_BAR).get_attribute("data-processed"))
    page.wait_for_function(PROCESSED_ABOVE, arg=[LIVE_BAR, first], timeout=30_000)
    expect(page.locator(LIVE_BADGE)).to_have_text("InProgress")
    expect(page.locator("#job-live")).to_contain_text("records/s")
    expect(page.locator("#job-live .timeline")).to_contain_text("InProgress")
    page.screenshot(path=str(docs_path("console-details.png")), full_page=True)

    expect(page.locator(LIVE_BADGE)).to_have_text("Completed", timeout=60_000)
    expect(page.locator(LIVE_BAR)).to_have_attribute("data-processed", "300")
    page.reload()
    expect(page.get_by_test_id("preview")).to_contain_text('"recordId":"R000000"')
    expect(page.get_by_test_id("manifest")).to_contain_text("processedRecordCount")
    download = page.get_by_role("link", name="live.jsonl.out")
    with page.expect_download() as info:
        download.click()
    lines = Path(info.value.path()).read_bytes().splitlines()
    assert len(lines) == 300


def test_stop_from_the_button(signed_in: Any, console: OutcropServer, bedrock: Any) -> None:
    page = signed_in
    arn = create_job(bedrock, "stop-me", SLOW_MODEL, put_input(console, "stop", 3000), OUT)
    page.goto(url(console, f"/jobs/{job_id(arn)}"))
    expect(page.locator(LIVE_BADGE)).to_have_text("InProgress", timeout=30_000)

    page.get_by_role("link", name="Stop job").click()
    expect(page.get_by_role("heading", name="Stop job stop-me?")).to_be_visible()
    page.get_by_role("button", name="Stop job").click()
    expect(page).to_have_url(url(console, f"/jobs/{job_id(arn)}"))
    expect(page.locator(LIVE_BADGE)).to_have_text("Stopped", timeout=30_000)
    expect(page.get_by_role("link", name="Stop job")).to_have_count(0)
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Stopped"
    assert job["processedRecordCount"] < 3000


def test_create_from_the_form_with_inline_errors(
    signed_in: Any, console: OutcropServer, bedrock: Any
) -> None:
    page = signed_in
    input_uri = put_input(console, "form", 4)
    page.get_by_role("link", name="Create job").click()
    expect(page.get_by_label("Model", exact=True)).to_contain_text(SLOW_MODEL)

    page.get_by_label("Job name").fill("bad_name")
    page.get_by_label("Input data").fill(input_uri)
    page.get_by_label("Output location").fill("s3://console-out/form/")
    page.get_by_role("button", name="Create job").click()
    error = page.locator("#jobName-error")
    expect(error).to_contain_text("Value 'bad_name' at 'jobName' failed to satisfy constraint")
    expect(page.get_by_label("Job name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Input data")).to_have_value(input_uri)

    page.get_by_label("Job name").fill("form-made")
    page.get_by_label("Model", exact=True).select_option(ECHO)
    page.get_by_label("Tags").fill("team=console")
    page.get_by_role("button", name="Create job").click()
    expect(page).to_have_url(re.compile(r"/console/jobs/[a-z0-9]{12}$"))
    expect(page.get_by_role("heading", name="form-made", level=1)).to_be_visible()
    arn = page.get_by_test_id("job-arn").inner_text()
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert (job["jobName"], job["modelId"]) == ("form-made", ECHO)
    assert bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == [
        {"key": "team", "value": "console"}
    ]
    expect(page.locator(LIVE_BADGE)).to_have_text("Completed", timeout=30_000)


def test_user_values_render_as_text(
    signed_in: Any, console: OutcropServer, bedrock: Any, dialogs: list[str]
) -> None:
    page = signed_in
    attack = "<script>alert(1)</script>"
    arn = create_job(bedrock, "escape-me", ECHO, put_input(console, "xss", 2, text=attack), OUT)
    wait_for_terminal(bedrock, arn)
    # The API's tag pattern refuses "<", so put the value straight into the store, as data
    # written by any other path would be.
    engine = create_db_engine(f"sqlite:///{console.data_dir / 'outcrop.db'}")
    SqlJobStore(engine).tag_job(job_id(arn), [Tag("note", attack)], arn)
    engine.dispose()

    page.goto(url(console, f"/jobs/{job_id(arn)}"))
    expect(page.locator('tr[data-tag-key="note"] .tag-value')).to_have_text(attack)
    expect(page.get_by_test_id("preview")).to_contain_text(attack)

    # The API quotes a refused value in its message; the page shows that as text as well.
    page.get_by_label("Key", exact=True).fill("second")
    page.get_by_label("Value", exact=True).fill("<img src=x onerror=alert(2)>")
    page.get_by_role("button", name="Add tag").click()
    expect(page.get_by_role("alert")).to_contain_text("<img src=x onerror=alert(2)>")
    assert page.locator("img").count() == 0
    assert page.locator("script:not([src])").count() == 0
    assert dialogs == []


def test_other_accounts_jobs_are_invisible(page: Any, console: OutcropServer, bedrock: Any) -> None:
    mine = create_job(bedrock, "root-private", ECHO, put_input(console, "private", 2), OUT)
    wait_for_terminal(bedrock, mine)
    other = create_account(console, "console-other")
    other_bedrock = console.client(
        aws_access_key_id=other.access_key_id, aws_secret_access_key=other.secret_access_key
    )
    create_job(other_bedrock, "other-visible", ECHO, "s3://console-in/other.jsonl", OUT)

    sign_in(page, console, other.access_key_id, other.secret_access_key)
    expect(page.get_by_test_id("account-id")).to_have_text(other.account_id)
    expect(page.get_by_role("link", name="other-visible", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="root-private", exact=True)).to_have_count(0)

    response = page.goto(url(console, f"/jobs/{job_id(mine)}"))
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_text("root-private")).to_have_count(0)
    for path in ("/live", "/stop", f"/download?key={job_id(mine)}/manifest.json.out"):
        assert page.request.get(url(console, f"/jobs/{job_id(mine)}{path}")).status == 404
    page.goto(url(console, "/events"))
    expect(page.get_by_text("root-private")).to_have_count(0)


# -- without a browser: CSRF, session fixation, the live stream ----------------------------


@contextmanager
def _signed_in_client(console: OutcropServer) -> Iterator[httpx.Client]:
    creds = console.credentials()
    with httpx.Client(base_url=console.endpoint, timeout=10) as client:
        token = csrf_token(client.get("/console/signin").text)
        response = client.post(
            "/console/signin",
            data={
                "csrf_token": token,
                "access_key_id": creds["access_key_id"],
                "secret_access_key": creds["secret_access_key"],
            },
        )
        assert response.status_code == 303
        yield client


def test_posts_without_the_csrf_token_are_refused(console: OutcropServer, bedrock: Any) -> None:
    creds = console.credentials()
    with httpx.Client(base_url=console.endpoint, timeout=10) as anonymous:
        anonymous.get("/console/signin")
        refused = anonymous.post(
            "/console/signin",
            data={
                "access_key_id": creds["access_key_id"],
                "secret_access_key": creds["secret_access_key"],
            },
        )
        assert refused.status_code == 403

    arn = create_job(bedrock, "csrf-target", ECHO, put_input(console, "csrf", 2), OUT)
    with _signed_in_client(console) as client:
        path = f"/console/jobs/{job_id(arn)}"
        token = csrf_token(client.get(path).text)
        for data in ({"key": "csrf", "value": "x"}, {"key": "csrf", "csrf_token": "forged"}):
            assert client.post(f"{path}/tags", data=data).status_code == 403
        assert client.post(f"{path}/stop", data={}).status_code == 403
        assert client.post("/console/signout", data={}).status_code == 403
        assert bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == []

        accepted = client.post(f"{path}/tags", data={"csrf_token": token, "key": "csrf"})
        assert accepted.status_code == 303
        tags = bedrock.list_tags_for_resource(resourceARN=arn)["tags"]
        assert tags == [{"key": "csrf", "value": ""}]


def test_sign_in_issues_a_new_session(console: OutcropServer) -> None:
    creds = console.credentials()
    with httpx.Client(base_url=console.endpoint, timeout=10) as client:
        token = csrf_token(client.get("/console/signin").text)
        before = client.cookies["outcrop_console"]
        response = client.post(
            "/console/signin",
            data={
                "csrf_token": token,
                "access_key_id": creds["access_key_id"],
                "secret_access_key": creds["secret_access_key"],
            },
        )
        assert response.status_code == 303
        after = client.cookies["outcrop_console"]
        assert after != before
        assert token not in client.get("/console/jobs").text  # a new CSRF token too
    with httpx.Client(base_url=console.endpoint, timeout=10) as attacker:
        attacker.cookies.set("outcrop_console", before, path="/console")
        assert attacker.get("/console/jobs").status_code == 303  # the old cookie is still anonymous
        attacker.cookies.set("outcrop_console", after[:-2] + "xx", path="/console")
        assert attacker.get("/console/jobs").status_code == 303  # a tampered cookie is nobody


def test_stream_needs_a_session_and_reports_changes(console: OutcropServer, bedrock: Any) -> None:
    with httpx.Client(base_url=console.endpoint, timeout=10) as anonymous:
        assert anonymous.get("/console/stream").status_code == 401
    with _signed_in_client(console) as client, client.stream("GET", "/console/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        create_job(bedrock, "stream-trigger", ECHO, put_input(console, "stream", 1), OUT)
        assert "event: change" in lines
