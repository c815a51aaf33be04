"""Paging while another client keeps creating jobs: no duplicates, nothing that existed is lost."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.acceptance.raw import create_body
from tests.server import OutcropServer

N_EXISTING = 150


class Creator(threading.Thread):
    """Creates jobs one after another; the pager waits on `created` to interleave with it."""

    def __init__(self, client: Any) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.arns: list[str] = []
        self.errors: list[BaseException] = []
        self.created = threading.Condition()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.is_set():
                arn = self.client.create_model_invocation_job(
                    **create_body(jobName=f"new-{len(self.arns)}")
                )["jobArn"]
                with self.created:
                    self.arns.append(arn)
                    self.created.notify_all()
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
            with self.created:
                self.created.notify_all()

    def wait_for_more_than(self, count: int) -> None:
        with self.created:
            ok = self.created.wait_for(lambda: len(self.arns) > count or self.errors, timeout=30)
        assert ok and not self.errors, self.errors


@pytest.mark.parametrize("order", ["Descending", "Ascending"])
def test_paging_while_jobs_are_created(quiet_server: OutcropServer, order: str):
    client = quiet_server.client()
    before = [
        client.create_model_invocation_job(**create_body(jobName=f"old-{order[:3]}-{i}"))["jobArn"]
        for i in range(N_EXISTING)
    ]
    # Jobs of earlier parametrisations also exist before paging starts.
    existing = {
        s["jobArn"]
        for page in client.get_paginator("list_model_invocation_jobs").paginate()
        for s in page["invocationJobSummaries"]
    }
    assert set(before) <= existing

    creator = Creator(quiet_server.client())
    creator.start()
    seen: list[str] = []
    try:
        creator.wait_for_more_than(0)
        token: str | None = None
        while True:
            # A job is created between every two pages, so the listing really races writers.
            creator.wait_for_more_than(len(creator.arns))
            kwargs: dict[str, Any] = {"maxResults": 7, "sortOrder": order}
            if token:
                kwargs["nextToken"] = token
            page = client.list_model_invocation_jobs(**kwargs)
            seen += [s["jobArn"] for s in page["invocationJobSummaries"]]
            token = page.get("nextToken")
            if not token:
                break
    finally:
        creator.done.set()
        creator.join(timeout=30)
    assert not creator.errors, creator.errors

    assert len(seen) == len(set(seen)), "a job appeared twice"
    missing = existing - set(seen)
    assert not missing, f"{len(missing)} jobs that existed before paging were not listed"
    assert set(seen) <= existing | set(creator.arns)
    assert len(creator.arns) > len(existing) // 7  # writes really happened during paging
    if order == "Descending":
        # Newer jobs sort before the cursor: only the first page can have caught any.
        assert not (set(seen[7:]) & set(creator.arns))
