"""ListModelInvocationJobs over 260 jobs: every filter, both orders, small and large pages.

Each listing is compared, in order and content, with a brute-force expectation computed from
the jobs the test created. The server runs without the engine, so statuses only change where
the test stops a job (Submitted -> Stopping).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.acceptance.raw import RawClient, create_body

N_JOBS = 260
GROUPS = ("alpha", "beta", "gamma", "delta")


@dataclass(frozen=True)
class Created:
    index: int
    arn: str
    name: str
    status: str


@dataclass(frozen=True)
class Population:
    jobs: list[Created]  # in creation order, which is submit order
    # between[i] is a moment strictly after job i's submitTime and before job i+1's.
    between: list[datetime]


def _name(i: int) -> str:
    if i % 18 == 5 and i < 250:
        return f"exact-{i:03d}"  # 14 jobs: a result that fills pages of 7 exactly
    return f"{GROUPS[i % len(GROUPS)]}-{i:03d}"


@pytest.fixture(scope="module")
def population(quiet_bedrock: Any) -> Population:
    jobs: list[Created] = []
    between: list[datetime] = []
    for i in range(N_JOBS):
        arn = quiet_bedrock.create_model_invocation_job(**create_body(jobName=_name(i)))["jobArn"]
        # Same machine, same clock: this moment lies between this job's submit and the next's.
        between.append(datetime.now(UTC))
        jobs.append(Created(i, arn, _name(i), "Submitted"))
    for job in jobs[::3]:
        quiet_bedrock.stop_model_invocation_job(jobIdentifier=job.arn)
    jobs = [
        Created(j.index, j.arn, j.name, "Stopping" if j.index % 3 == 0 else "Submitted")
        for j in jobs
    ]
    # Sanity: the server agrees with the bookkeeping, and submit times follow creation order.
    listed = _all_pages(quiet_bedrock, {"sortOrder": "Ascending"}, 1000)
    assert [s["jobArn"] for s in listed] == [j.arn for j in jobs]
    assert [s["status"] for s in listed] == [j.status for j in jobs]
    times = [s["submitTime"] for s in listed]
    assert times == sorted(times)
    return Population(jobs, between)


def _pages(client: Any, filters: dict[str, Any], size: int) -> list[dict[str, Any]]:
    paginator = client.get_paginator("list_model_invocation_jobs")
    return list(paginator.paginate(**filters, PaginationConfig={"PageSize": size}))


def _all_pages(client: Any, filters: dict[str, Any], size: int) -> list[dict[str, Any]]:
    return [s for page in _pages(client, filters, size) for s in page["invocationJobSummaries"]]


def _expected(pop: Population, filters: dict[str, Any]) -> list[Created]:
    chosen = list(pop.jobs)
    if "statusEquals" in filters:
        chosen = [j for j in chosen if j.status == filters["statusEquals"]]
    if "nameContains" in filters:
        chosen = [j for j in chosen if filters["nameContains"] in j.name]
    if "submitTimeAfter" in filters:
        first = pop.between.index(filters["submitTimeAfter"]) + 1
        chosen = [j for j in chosen if j.index >= first]
    if "submitTimeBefore" in filters:
        last = pop.between.index(filters["submitTimeBefore"])
        chosen = [j for j in chosen if j.index <= last]
    if filters.get("sortOrder") != "Ascending":
        chosen.reverse()  # Descending is the default
    return chosen


FILTERS: dict[str, Any] = {
    "none": lambda p: {},
    "status-submitted": lambda p: {"statusEquals": "Submitted"},
    "status-stopping": lambda p: {"statusEquals": "Stopping"},
    "status-completed-empty": lambda p: {"statusEquals": "Completed"},
    "name-beta": lambda p: {"nameContains": "beta"},
    "name-a-1": lambda p: {"nameContains": "a-1"},
    "name-exact-14": lambda p: {"nameContains": "exact"},
    "after": lambda p: {"submitTimeAfter": p.between[80]},
    "before": lambda p: {"submitTimeBefore": p.between[190]},
    "after-and-before": lambda p: {
        "submitTimeAfter": p.between[40],
        "submitTimeBefore": p.between[230],
    },
    "combined": lambda p: {
        "statusEquals": "Submitted",
        "nameContains": "a-",
        "submitTimeAfter": p.between[20],
        "submitTimeBefore": p.between[240],
        "sortBy": "CreationTime",
    },
}


@pytest.mark.parametrize("size", [7, 100])
@pytest.mark.parametrize("order", ["Ascending", "Descending", None])
@pytest.mark.parametrize("which", list(FILTERS))
def test_paging_matches_brute_force(
    quiet_bedrock: Any, population: Population, which: str, order: str | None, size: int
):
    filters = FILTERS[which](population)
    if order is not None:
        filters["sortOrder"] = order
    expected = [j.arn for j in _expected(population, filters)]
    if which != "status-completed-empty":
        assert len(expected) > 7, "the filter should give several pages"

    pages = _pages(quiet_bedrock, filters, size)
    got = [s["jobArn"] for page in pages for s in page["invocationJobSummaries"]]
    assert got == expected
    # Every page but the last is full and has a nextToken; the last has none.
    for page in pages[:-1]:
        assert len(page["invocationJobSummaries"]) == size
        assert page["nextToken"]
    assert "nextToken" not in pages[-1]
    assert len(pages) == max(1, -(-len(expected) // size))
    if "statusEquals" in filters:
        assert {s["status"] for p in pages for s in p["invocationJobSummaries"]} <= {
            filters["statusEquals"]
        }


def test_default_page_size_is_1000_and_everything_fits(quiet_bedrock: Any, population: Population):
    page = quiet_bedrock.list_model_invocation_jobs()
    assert [s["jobArn"] for s in page["invocationJobSummaries"]] == [
        j.arn for j in reversed(population.jobs)
    ]
    assert "nextToken" not in page


def test_time_filters_accept_second_milli_and_micro_precision(
    raw: RawClient, population: Population
):
    moment = population.between[100]
    expected = [j.arn for j in population.jobs if j.index > 100]
    for text in (
        moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        moment.isoformat(),  # +00:00 offset
    ):
        body = raw.list({"submitTimeAfter": text, "sortOrder": "Ascending"}).json()
        assert [s["jobArn"] for s in body["invocationJobSummaries"]] == expected
    # Second precision cannot fall between two jobs created within a second; it is only
    # accepted and applied as a bound.
    whole = moment.replace(microsecond=0)
    body = raw.list({"submitTimeBefore": whole.strftime("%Y-%m-%dT%H:%M:%SZ")}).json()
    assert {s["jobArn"] for s in body["invocationJobSummaries"]} <= {
        j.arn for j in population.jobs if j.index <= 100
    }
    millis = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert raw.list({"submitTimeAfter": millis}).status_code == 200


def test_raw_pages_omit_next_token_on_the_last_page(raw: RawClient, population: Population):
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        query = {"maxResults": "50", "statusEquals": "Stopping"}
        if token:
            query["nextToken"] = token
        body = raw.list(query).json()
        pages += 1
        seen += [s["jobArn"] for s in body["invocationJobSummaries"]]
        if "nextToken" not in body:
            break
        token = body["nextToken"]
        assert isinstance(token, str) and 1 <= len(token) <= 2048 and " " not in token
    assert seen == [j.arn for j in reversed(population.jobs) if j.status == "Stopping"]
    assert pages == 2  # 87 Stopping jobs in pages of 50


def test_name_contains_ignores_case(quiet_bedrock: Any, population: Population):
    upper = _all_pages(quiet_bedrock, {"nameContains": "BeTa"}, 100)
    assert [s["jobArn"] for s in upper] == [
        j.arn for j in reversed(population.jobs) if "beta" in j.name
    ]
