"""One contract for the job store: the same tests against SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, select
from tests.integration.db import FakeClock

from outcrop.domain.clock import to_us
from outcrop.domain.jobs import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Job,
    JobSpec,
    JobStatus,
    ListQuery,
    RecordCounts,
    Tag,
    Transition,
    parse_job_identifier,
)
from outcrop.errors import ConflictError, ResourceNotFoundError, TooManyTagsError
from outcrop.store.database import create_db_engine, migrate
from outcrop.store.shard_work import Partial, ShardWork
from outcrop.store.sql import MAX_TAGS_PER_JOB, SqlJobStore
from outcrop.store.tables import jobs
from outcrop.store.work import InputFile, Shard, ShardResult, WorkStore

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
REGION = "us-west-2"
HOUR = 3600.0
S = JobStatus
T = TypeVar("T")

# The shortest legal route from Submitted to each status (each step is one transition).
ROUTE: dict[JobStatus, list[JobStatus]] = {
    S.SUBMITTED: [],
    S.VALIDATING: [S.VALIDATING],
    S.SCHEDULED: [S.VALIDATING, S.SCHEDULED],
    S.IN_PROGRESS: [S.VALIDATING, S.SCHEDULED, S.IN_PROGRESS],
    S.COMPLETED: [S.VALIDATING, S.SCHEDULED, S.IN_PROGRESS, S.COMPLETED],
    S.PARTIALLY_COMPLETED: [S.VALIDATING, S.SCHEDULED, S.IN_PROGRESS, S.PARTIALLY_COMPLETED],
    S.FAILED: [S.FAILED],
    S.STOPPING: [S.STOPPING],
    S.STOPPED: [S.STOPPING, S.STOPPED],
    S.EXPIRED: [S.VALIDATING, S.EXPIRED],
}


def make_spec(name: str = "job-1", token: str | None = None, **changes: Any) -> JobSpec:
    spec = JobSpec(
        job_name=name,
        model_id="anthropic.claude-3-haiku-20240307-v1:0",
        role_arn="arn:aws:iam::111122223333:role/BatchRole",
        input_s3_uri="s3://in-bucket/prefix/",
        output_s3_uri="s3://out-bucket/results/",
        timeout_hours=24,
        invocation_type="InvokeModel",
        client_request_token=token,
    )
    return replace(spec, **changes)


def run_together(count: int, action: Callable[[int], T]) -> list[T]:
    """Run `action(i)` in `count` threads released at the same instant; return results in order."""
    barrier = threading.Barrier(count)

    def call(index: int) -> T:
        barrier.wait(timeout=30)
        return action(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def cursor(job: Job) -> tuple[int, str]:
    return (to_us(job.submit_time), job.job_id)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_db_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine, clock: FakeClock) -> SqlJobStore:
    return SqlJobStore(engine, clock=clock)


@pytest.fixture
def other_store(db_url: str, engine: Engine, clock: FakeClock) -> Iterator[SqlJobStore]:
    """A second store on its own engine (its own pool): another process on the same database."""
    other = create_db_engine(db_url)
    yield SqlJobStore(other, clock=clock)
    other.dispose()


class TestJobStoreContract:
    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def create(store: SqlJobStore, spec: JobSpec | None = None, account: str = ACCOUNT) -> Job:
        job, created = store.create_job(account, REGION, spec or make_spec(), HOUR)
        assert created
        return job

    def job_in(self, store: SqlJobStore, status: JobStatus, name: str = "job-1") -> Job:
        job = self.create(store, make_spec(name))
        for step in ROUTE[status]:
            job = store.transition(job.job_id, step)
        assert job.status is status
        return job

    # -- create_job -------------------------------------------------------------------

    def test_create_job_round_trips_every_field(self, store: SqlJobStore, clock: FakeClock) -> None:
        spec = make_spec(
            "full-job",
            token="token-1",
            input_format="jsonl",
            input_bucket_owner="999988887777",
            output_kms_key_id="arn:aws:kms:us-west-2:111122223333:key/abc",
            output_bucket_owner="999988887777",
            vpc_config={"subnetIds": ["subnet-1", "subnet-2"], "securityGroupIds": ["sg-1"]},
            tags=(Tag("team", "ml"), Tag("env", "test")),
        )
        job, created = store.create_job(ACCOUNT, REGION, spec, HOUR)

        assert created
        assert re.fullmatch(r"[a-z0-9]{12}", job.job_id)
        assert job.arn == f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-invocation-job/{job.job_id}"
        ref = parse_job_identifier(job.arn)
        assert ref is not None and (ref.job_id, ref.account_id) == (job.job_id, ACCOUNT)
        assert (job.account_id, job.region) == (ACCOUNT, REGION)
        # Tags come back sorted by key; everything else exactly as given.
        assert job.spec == replace(spec, tags=(Tag("env", "test"), Tag("team", "ml")))
        assert job.status is S.SUBMITTED
        assert job.submit_time == clock.now  # microseconds survive the round trip
        assert job.last_modified_time == clock.now
        assert job.job_expiration_time == clock.now + timedelta(hours=24)
        assert job.end_time is None
        assert job.message is None
        assert job.counts == RecordCounts()
        assert store.get_job(job.job_id) == job
        assert store.require_job(ACCOUNT, job.job_id) == job

    def test_create_job_with_only_required_fields(self, store: SqlJobStore) -> None:
        job = self.create(store, make_spec("bare"))
        assert job.spec == make_spec("bare")
        assert store.list_tags(job.job_id) == []

    def test_job_ids_are_distinct(self, store: SqlJobStore) -> None:
        ids = {self.create(store, make_spec(f"job-{i}")).job_id for i in range(20)}
        assert len(ids) == 20

    @pytest.mark.parametrize(("hour_seconds", "timeout_hours"), [(3600.0, 72), (0.5, 24)])
    def test_expiration_is_submit_plus_timeout_in_hour_seconds(
        self, store: SqlJobStore, clock: FakeClock, hour_seconds: float, timeout_hours: int
    ) -> None:
        spec = make_spec(timeout_hours=timeout_hours)
        job, _ = store.create_job(ACCOUNT, REGION, spec, hour_seconds)
        expected = clock.now + timedelta(seconds=timeout_hours * hour_seconds)
        assert job.job_expiration_time == expected
        assert store.get_job(job.job_id) == job

    def test_unknown_or_foreign_job_is_not_found(self, store: SqlJobStore) -> None:
        job = self.create(store)
        assert store.get_job("zzzzzzzzzzzz") is None
        with pytest.raises(ResourceNotFoundError):
            store.require_job(ACCOUNT, "zzzzzzzzzzzz")
        with pytest.raises(ResourceNotFoundError):
            store.require_job(OTHER_ACCOUNT, job.job_id)

    # -- idempotency ------------------------------------------------------------------

    def test_same_token_and_body_returns_the_original(
        self, store: SqlJobStore, clock: FakeClock
    ) -> None:
        first, created = store.create_job(ACCOUNT, REGION, make_spec(token="tok"), HOUR)
        assert created
        clock.advance(60)
        again, created_again = store.create_job(ACCOUNT, REGION, make_spec(token="tok"), HOUR)
        assert not created_again
        assert again == first
        assert store.job_id_for_token(ACCOUNT, "tok") == first.job_id
        assert store.job_id_for_token(ACCOUNT, "other") is None
        assert len(store.list_jobs(ACCOUNT, ListQuery())) == 1

    def test_same_token_with_a_different_body_is_a_conflict(self, store: SqlJobStore) -> None:
        store.create_job(ACCOUNT, REGION, make_spec(token="tok"), HOUR)
        with pytest.raises(ConflictError):
            store.create_job(ACCOUNT, REGION, make_spec(token="tok", timeout_hours=48), HOUR)
        with pytest.raises(ConflictError):
            store.create_job(ACCOUNT, REGION, make_spec(token="tok", tags=(Tag("a", "b"),)), HOUR)
        assert len(store.list_jobs(ACCOUNT, ListQuery())) == 1

    def test_tokens_are_scoped_to_the_account(self, store: SqlJobStore) -> None:
        mine = self.create(store, make_spec(token="tok"))
        theirs = self.create(store, make_spec(token="tok"), account=OTHER_ACCOUNT)
        assert mine.job_id != theirs.job_id
        assert store.job_id_for_token(OTHER_ACCOUNT, "tok") == theirs.job_id

    def test_concurrent_creates_with_one_token_make_one_job(
        self, store: SqlJobStore, other_store: SqlJobStore
    ) -> None:
        stores = [store, other_store]

        def create(i: int) -> tuple[Job, bool]:
            spec = make_spec(token="race")
            return stores[i % 2].create_job(ACCOUNT, REGION, spec, HOUR)

        results = run_together(8, create)

        assert sum(created for _, created in results) == 1
        assert len({job.job_id for job, _ in results}) == 1
        listed = store.list_jobs(ACCOUNT, ListQuery())
        assert [j.job_id for j in listed] == [results[0][0].job_id]
        assert [t.status for t in store.transitions(listed[0].job_id)] == [S.SUBMITTED]

    # -- list_jobs --------------------------------------------------------------------

    def test_list_pages_by_keyset_in_both_orders(
        self, store: SqlJobStore, clock: FakeClock
    ) -> None:
        made: list[Job] = []
        for i in range(7):
            made.append(self.create(store, make_spec(f"job-{i}")))
            if i != 2:  # jobs 2 and 3 share a submit time: job_id breaks the tie
                clock.advance(1)
        self.create(store, make_spec("foreign"), account=OTHER_ACCOUNT)
        oldest_first = sorted(made, key=cursor)

        for ascending, expected in [(True, oldest_first), (False, oldest_first[::-1])]:
            pages: list[list[str]] = []
            after: tuple[int, str] | None = None
            while True:
                page = store.list_jobs(
                    ACCOUNT, ListQuery(ascending=ascending, limit=2, after=after)
                )
                if not page:
                    break
                pages.append([j.job_id for j in page])
                after = cursor(page[-1])
            assert [len(p) for p in pages] == [2, 2, 2, 1]
            assert [i for page in pages for i in page] == [j.job_id for j in expected]

    def test_list_filters_by_status(self, store: SqlJobStore) -> None:
        submitted = self.job_in(store, S.SUBMITTED, "a")
        validating = self.job_in(store, S.VALIDATING, "b")
        failed = self.job_in(store, S.FAILED, "c")

        def ids(status: JobStatus) -> list[str]:
            return [j.job_id for j in store.list_jobs(ACCOUNT, ListQuery(status=status))]

        assert ids(S.SUBMITTED) == [submitted.job_id]
        assert ids(S.VALIDATING) == [validating.job_id]
        assert ids(S.FAILED) == [failed.job_id]
        assert ids(S.COMPLETED) == []
        assert store.count_active_jobs(ACCOUNT) == 2
        assert store.count_active_jobs(OTHER_ACCOUNT) == 0

    def test_name_contains_treats_like_wildcards_literally(self, store: SqlJobStore) -> None:
        # The API's name pattern forbids % and _, but the store must not rely on that.
        for name in ["a%b", "a_b", "axb", "a\\b", "abc"]:
            self.create(store, make_spec(name))

        def names(needle: str) -> set[str]:
            found = store.list_jobs(ACCOUNT, ListQuery(name_contains=needle))
            return {j.spec.job_name for j in found}

        assert names("%") == {"a%b"}
        assert names("_") == {"a_b"}
        assert names("a%") == {"a%b"}
        assert names("a_b") == {"a_b"}
        assert names("\\") == {"a\\b"}
        assert names("b") == {"a%b", "a_b", "axb", "a\\b", "abc"}
        assert names("bc") == {"abc"}
        assert names("nothing") == set()

    def test_name_contains_ignores_case_on_every_backend(self, store: SqlJobStore) -> None:
        self.create(store, make_spec("Nightly-Batch"))
        found = store.list_jobs(ACCOUNT, ListQuery(name_contains="nightly-b"))
        assert [j.spec.job_name for j in found] == ["Nightly-Batch"]

    def test_submit_time_bounds_are_exclusive(self, store: SqlJobStore, clock: FakeClock) -> None:
        made = []
        for i in range(4):
            made.append(self.create(store, make_spec(f"job-{i}")))
            clock.advance(10)
        times = [j.submit_time for j in made]

        def names(**bounds: Any) -> list[str]:
            query = ListQuery(ascending=True, **bounds)
            return [j.spec.job_name for j in store.list_jobs(ACCOUNT, query)]

        assert names(submitted_after=times[1]) == ["job-2", "job-3"]
        assert names(submitted_before=times[2]) == ["job-0", "job-1"]
        assert names(submitted_after=times[0], submitted_before=times[3]) == ["job-1", "job-2"]
        assert names(submitted_after=times[0] + timedelta(microseconds=1)) == [
            "job-1",
            "job-2",
            "job-3",
        ]

    # -- tags -------------------------------------------------------------------------

    def test_tag_untag_and_overwrite(self, store: SqlJobStore, clock: FakeClock) -> None:
        job = self.create(store, make_spec(tags=(Tag("keep", "1"), Tag("team", "ml"))))
        clock.advance(5)
        store.tag_job(job.job_id, [Tag("team", "platform"), Tag("cost", "42")], job.arn)
        assert store.list_tags(job.job_id) == [
            Tag("cost", "42"),
            Tag("keep", "1"),
            Tag("team", "platform"),
        ]
        assert store.require_job(ACCOUNT, job.job_id).last_modified_time == clock.now

        store.untag_job(job.job_id, ["team", "absent"])
        assert store.list_tags(job.job_id) == [Tag("cost", "42"), Tag("keep", "1")]
        store.untag_job(job.job_id, [])
        assert store.require_job(ACCOUNT, job.job_id).spec.tags == (
            Tag("cost", "42"),
            Tag("keep", "1"),
        )

    def test_at_most_fifty_tags(self, store: SqlJobStore) -> None:
        job = self.create(store)
        fifty = [Tag(f"k{i:02d}", "v") for i in range(MAX_TAGS_PER_JOB)]
        store.tag_job(job.job_id, fifty, job.arn)
        # Overwriting keeps the count at 50, which is allowed.
        store.tag_job(job.job_id, [Tag("k00", "new")], job.arn)

        with pytest.raises(TooManyTagsError) as error:
            store.tag_job(job.job_id, [Tag("k01", "changed"), Tag("extra", "v")], job.arn)
        assert error.value.resource_name == job.arn

        tags = store.list_tags(job.job_id)
        assert len(tags) == MAX_TAGS_PER_JOB
        # The refused request changed nothing, not even the tag it would have overwritten.
        assert {t.key: t.value for t in tags}["k01"] == "v"
        assert {t.key: t.value for t in tags}["k00"] == "new"

        store.untag_job(job.job_id, ["k49"])
        store.tag_job(job.job_id, [Tag("extra", "v")], job.arn)
        assert len(store.list_tags(job.job_id)) == MAX_TAGS_PER_JOB

    # -- request_stop -----------------------------------------------------------------

    @pytest.mark.parametrize("status", sorted(ACTIVE_STATUSES - {S.STOPPING}))
    def test_stop_moves_an_active_job_to_stopping(
        self, store: SqlJobStore, clock: FakeClock, status: JobStatus
    ) -> None:
        job = self.job_in(store, status)
        clock.advance(3)
        stopped = store.request_stop(ACCOUNT, job.job_id)
        assert stopped.status is S.STOPPING
        assert stopped.end_time is None
        assert stopped.last_modified_time == clock.now
        assert store.transitions(job.job_id)[-1] == Transition(S.STOPPING, clock.now)

    def test_stop_is_a_no_op_on_stopping_and_stopped(
        self, store: SqlJobStore, clock: FakeClock
    ) -> None:
        job = self.job_in(store, S.STOPPING)
        history = store.transitions(job.job_id)
        clock.advance(3)
        assert store.request_stop(ACCOUNT, job.job_id) == store.get_job(job.job_id)
        assert store.transitions(job.job_id) == history

        stopped = store.transition(job.job_id, S.STOPPED)
        history = store.transitions(job.job_id)
        clock.advance(3)
        assert store.request_stop(ACCOUNT, job.job_id) == stopped
        assert store.transitions(job.job_id) == history

    @pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES - {S.STOPPED}))
    def test_stop_of_a_finished_job_is_a_conflict(
        self, store: SqlJobStore, status: JobStatus
    ) -> None:
        job = self.job_in(store, status)
        with pytest.raises(ConflictError):
            store.request_stop(ACCOUNT, job.job_id)
        assert store.get_job(job.job_id) == job

    def test_stop_of_a_foreign_or_unknown_job_is_not_found(self, store: SqlJobStore) -> None:
        job = self.create(store)
        with pytest.raises(ResourceNotFoundError):
            store.request_stop(OTHER_ACCOUNT, job.job_id)
        with pytest.raises(ResourceNotFoundError):
            store.request_stop(ACCOUNT, "zzzzzzzzzzzz")
        assert store.require_job(ACCOUNT, job.job_id).status is S.SUBMITTED

    # -- transitions ------------------------------------------------------------------

    def test_illegal_transition_is_a_conflict_and_changes_nothing(self, store: SqlJobStore) -> None:
        job = self.create(store)
        with pytest.raises(ConflictError):
            store.transition(job.job_id, S.IN_PROGRESS)
        with pytest.raises(ConflictError):
            store.transition(job.job_id, S.VALIDATING, expected=frozenset({S.SCHEDULED}))
        assert store.get_job(job.job_id) == job
        assert [t.status for t in store.transitions(job.job_id)] == [S.SUBMITTED]

        done = store.transition(job.job_id, S.FAILED, "boom")
        for target in JobStatus:
            with pytest.raises(ConflictError):
                store.transition(job.job_id, target)
        assert store.get_job(job.job_id) == done

    def test_transition_of_an_unknown_job_is_not_found(self, store: SqlJobStore) -> None:
        with pytest.raises(ResourceNotFoundError):
            store.transition("zzzzzzzzzzzz", S.VALIDATING)

    def test_history_is_kept_in_order_with_times_and_messages(
        self, store: SqlJobStore, clock: FakeClock
    ) -> None:
        job = self.create(store)
        expected = [Transition(S.SUBMITTED, clock.now)]
        for status, message in [
            (S.VALIDATING, None),
            (S.SCHEDULED, "planned"),
            (S.IN_PROGRESS, None),
            (S.PARTIALLY_COMPLETED, "3 records failed"),
        ]:
            clock.advance(1.5)
            store.transition(job.job_id, status, message)
            expected.append(Transition(status, clock.now, message))
        assert store.transitions(job.job_id) == expected
        assert store.transitions("zzzzzzzzzzzz") == []

    def test_end_time_is_set_only_on_terminal_statuses(
        self, store: SqlJobStore, clock: FakeClock
    ) -> None:
        job = self.create(store)
        for status in ROUTE[S.COMPLETED]:
            clock.advance(2)
            job = store.transition(job.job_id, status)
            if status in TERMINAL_STATUSES:
                assert job.end_time == clock.now
            else:
                assert job.end_time is None
            assert job.last_modified_time == clock.now
        assert store.get_job(job.job_id) == job

    def test_transition_stores_message_and_values(self, store: SqlJobStore) -> None:
        job = self.create(store)
        long_message = "x" * 3000
        job = store.transition(
            job.job_id, S.FAILED, long_message, values={"total_records": 7, "error_records": 7}
        )
        assert job.message == "x" * 2048
        assert (job.counts.total, job.counts.error) == (7, 7)
        assert store.transitions(job.job_id)[-1].message is not None

    # -- accounts, keys, meta ---------------------------------------------------------

    def test_accounts_are_created_once(self, store: SqlJobStore, clock: FakeClock) -> None:
        store.ensure_account(ACCOUNT, "first")
        clock.advance(1)
        store.ensure_account(OTHER_ACCOUNT, "second")
        store.ensure_account(ACCOUNT, "renamed?")
        assert store.list_accounts() == [(ACCOUNT, "first"), (OTHER_ACCOUNT, "second")]

    def test_access_keys(self, store: SqlJobStore, clock: FakeClock) -> None:
        store.ensure_account(ACCOUNT, "a")
        store.ensure_account(OTHER_ACCOUNT, "b")
        store.put_access_key("AKIDFIRST", "secret-1", ACCOUNT)
        clock.advance(1)
        store.put_access_key("AKIDSECOND", "secret-2", ACCOUNT)
        assert store.find_access_key("AKIDFIRST") == ("secret-1", ACCOUNT)
        assert store.find_access_key("AKIDNONE") is None
        assert store.access_keys_of(ACCOUNT) == [
            ("AKIDFIRST", "secret-1"),
            ("AKIDSECOND", "secret-2"),
        ]

        store.put_access_key("AKIDFIRST", "rotated", OTHER_ACCOUNT)
        assert store.find_access_key("AKIDFIRST") == ("rotated", OTHER_ACCOUNT)
        assert store.access_keys_of(ACCOUNT) == [("AKIDSECOND", "secret-2")]
        assert store.access_keys_of(OTHER_ACCOUNT) == [("AKIDFIRST", "rotated")]

    def test_meta_value_is_created_once_and_shared(
        self, store: SqlJobStore, other_store: SqlJobStore
    ) -> None:
        stores = [store, other_store]
        values = run_together(8, lambda i: stores[i % 2].meta_value("secret", lambda: f"v{i}"))
        assert len(set(values)) == 1

        def never() -> str:
            raise AssertionError("the stored value must be reused")

        assert store.meta_value("secret", never) == values[0]
        assert other_store.meta_value("secret", never) == values[0]
        assert store.meta_value("other", lambda: "x") == "x"

    # -- WorkStore: leases ------------------------------------------------------------

    def test_a_leased_job_is_claimable_by_another_engine_only_after_expiry(
        self, store: SqlJobStore, other_store: SqlJobStore, clock: FakeClock
    ) -> None:
        job = self.create(store)
        first = WorkStore(store, "engine-a", lease_seconds=0.5)
        second = WorkStore(other_store, "engine-b", lease_seconds=0.5)

        assert [j.job_id for j in first.claim_jobs([S.SUBMITTED], 10)] == [job.job_id]
        assert second.claim_jobs([S.SUBMITTED], 10) == []
        assert [j.job_id for j in first.claim_jobs([S.SUBMITTED], 10)] == [job.job_id]

        clock.advance(0.4)
        first.renew([job.job_id])  # now held until t+0.9
        clock.advance(0.4)
        assert second.claim_jobs([S.SUBMITTED], 10) == []
        second.renew([job.job_id])  # renewing someone else's lease does nothing
        clock.advance(0.2)
        assert [j.job_id for j in second.claim_jobs([S.SUBMITTED], 10)] == [job.job_id]
        assert first.claim_jobs([S.SUBMITTED], 10) == []

        first.release(job.job_id)  # not first's to release any more
        assert first.claim_jobs([S.SUBMITTED], 10) == []
        second.release(job.job_id)
        assert [j.job_id for j in first.claim_jobs([S.SUBMITTED], 10)] == [job.job_id]

    def test_claim_takes_the_oldest_in_the_given_statuses(
        self, store: SqlJobStore, clock: FakeClock
    ) -> None:
        made = []
        for i in range(4):
            made.append(self.create(store, make_spec(f"job-{i}")))
            clock.advance(1)
        store.transition(made[1].job_id, S.VALIDATING)
        work = WorkStore(store, "engine-a", lease_seconds=30)
        other = WorkStore(store, "engine-b", lease_seconds=30)

        assert [j.job_id for j in work.claim_jobs([S.SUBMITTED], 2)] == [
            made[0].job_id,
            made[2].job_id,
        ]
        assert [j.job_id for j in other.claim_jobs([S.SUBMITTED, S.VALIDATING], 10)] == [
            made[1].job_id,
            made[3].job_id,
        ]
        work.release_all_leases()
        assert len(other.claim_jobs([S.SUBMITTED, S.VALIDATING], 10)) == 4

    def test_concurrent_claims_never_share_a_job(
        self, store: SqlJobStore, other_store: SqlJobStore
    ) -> None:
        ids = {self.create(store, make_spec(f"job-{i}")).job_id for i in range(12)}
        workers = [
            WorkStore(store if i % 2 else other_store, f"engine-{i}", lease_seconds=60)
            for i in range(4)
        ]
        claims = run_together(
            4, lambda i: [j.job_id for j in workers[i].claim_jobs([S.SUBMITTED], 3)]
        )
        claimed = [job_id for batch in claims for job_id in batch]
        assert len(claimed) == len(set(claimed))
        assert set(claimed) <= ids

    # -- WorkStore: plan, shards, progress --------------------------------------------

    @staticmethod
    def plan() -> tuple[list[InputFile], list[Shard]]:
        files = [
            InputFile(0, "in/a.jsonl", "out/a.jsonl.out", 150, 15_000),
            InputFile(1, "in/b.jsonl", "out/b.jsonl.out", 60, 6_000),
        ]
        shards = [
            Shard(0, 0, 1, 0, 100),
            Shard(1, 0, 101, 10_000, 50),
            Shard(2, 1, 1, 0, 60),
        ]
        return files, shards

    def test_save_plan_schedules_with_zero_counts(
        self, store: SqlJobStore, clock: FakeClock
    ) -> None:
        job = self.job_in(store, S.VALIDATING)
        work = WorkStore(store, "engine-a", lease_seconds=30)
        files, shards = self.plan()
        clock.advance(1)

        scheduled = work.save_plan(job.job_id, files, shards)

        assert scheduled.status is S.SCHEDULED
        assert scheduled.counts == RecordCounts(
            total=210, processed=0, success=0, error=0, input_tokens=0, output_tokens=0
        )
        assert scheduled.last_modified_time == clock.now
        assert store.get_job(job.job_id) == scheduled
        assert work.files(job.job_id) == files
        assert work.shards(job.job_id) == shards
        assert work.scheduled_jobs(10) == [scheduled]

    def test_save_plan_is_atomic(self, store: SqlJobStore) -> None:
        job = self.create(store)  # Submitted cannot go straight to Scheduled
        work = WorkStore(store, "engine-a", lease_seconds=30)
        files, shards = self.plan()
        with pytest.raises(ConflictError):
            work.save_plan(job.job_id, files, shards)
        assert work.files(job.job_id) == []
        assert work.shards(job.job_id) == []
        assert store.get_job(job.job_id) == job

    def test_start_job_then_engines_share_its_shards_without_overlap(
        self, store: SqlJobStore, other_store: SqlJobStore
    ) -> None:
        job = self.job_in(store, S.VALIDATING)
        work = WorkStore(store, "engine-a", lease_seconds=30)
        files, plan = self.plan()
        work.save_plan(job.job_id, files, plan)

        started = work.start_job(job.job_id)

        assert started.status is S.IN_PROGRESS
        assert started.counts.total == 210
        assert work.in_progress_counts() == (1, {job.spec.model_id: 1})
        with pytest.raises(ConflictError):
            work.start_job(job.job_id)
        mine = ShardWork(store, "engine-a", lease_seconds=30)
        theirs = ShardWork(other_store, "engine-b", lease_seconds=30)
        assert mine.runnable_jobs(10) == [job.job_id]
        first = mine.claim(job.job_id, 1)
        rest = theirs.claim(job.job_id, 10)
        claimed = [s.shard_index for s in first + rest]
        assert sorted(claimed) == [s.shard_index for s in plan]  # every shard once, no overlap
        assert mine.claim(job.job_id, 10) == [] and theirs.runnable_jobs(10) == []

    def test_complete_shard_is_idempotent_and_durable_counts_sum_done_shards(
        self, store: SqlJobStore
    ) -> None:
        job = self.job_in(store, S.VALIDATING)
        work = WorkStore(store, "engine-a", lease_seconds=30)
        work.save_plan(job.job_id, *self.plan())
        work.start_job(job.job_id)
        assert work.durable_counts(job.job_id) == RecordCounts(
            processed=0, success=0, error=0, input_tokens=0, output_tokens=0
        )
        shards = ShardWork(store, "engine-a", lease_seconds=30)
        assert [s.shard_index for s in shards.claim(job.job_id, 3)] == [0, 1, 2]

        assert shards.complete(job.job_id, 0, ShardResult(97, 3, 0, 1000, 500))
        assert not shards.complete(job.job_id, 0, ShardResult(1, 1, 1, 1, 1))
        assert shards.complete(job.job_id, 2, ShardResult(60, 0, 0, 600, 300))

        assert [s.shard_index for s in work.shards(job.job_id, pending_only=True)] == [1]
        assert [(s.done, s.part_owner) for s in work.shards(job.job_id)] == [
            (True, "engine-a"),
            (False, None),
            (True, "engine-a"),
        ]
        counts = work.durable_counts(job.job_id)
        assert counts == RecordCounts(
            processed=160, success=157, error=3, input_tokens=1600, output_tokens=800
        )
        # the job's live counters are the shards' sum, kept current by every completion
        assert store.require_job(ACCOUNT, job.job_id).counts == replace(counts, total=210)

    def test_a_shard_taken_over_is_not_completed_by_its_old_owner(
        self, store: SqlJobStore, other_store: SqlJobStore, clock: FakeClock
    ) -> None:
        job = self.job_in(store, S.VALIDATING)
        work = WorkStore(store, "engine-a", lease_seconds=30)
        work.save_plan(job.job_id, *self.plan())
        work.start_job(job.job_id)
        stale = ShardWork(store, "engine-a", lease_seconds=0.5)
        fresh = ShardWork(other_store, "engine-b", lease_seconds=30)
        assert [s.shard_index for s in stale.claim(job.job_id, 1)] == [0]
        clock.advance(1)  # engine-a's lease runs out; engine-b takes the shard over
        assert [s.shard_index for s in fresh.claim(job.job_id, 1)] == [0]

        assert not stale.complete(job.job_id, 0, ShardResult(1, 0, 0, 1, 1))
        assert fresh.complete(job.job_id, 0, ShardResult(100, 0, 0, 5, 5))
        assert work.shards(job.job_id)[0].part_owner == "engine-b"

    def test_progress_is_published_only_while_running(self, store: SqlJobStore) -> None:
        job = self.job_in(store, S.VALIDATING)
        work = WorkStore(store, "engine-a", lease_seconds=30)
        work.save_plan(job.job_id, *self.plan())
        work.start_job(job.job_id)
        shards = ShardWork(store, "engine-a", lease_seconds=30)
        shards.claim(job.job_id, 1)
        shards.publish(job.job_id, {0: Partial(5, 1, 50, 20)})
        assert store.require_job(ACCOUNT, job.job_id).counts.processed == 6
        stopped = work.finish(job.job_id, S.FAILED, None, "backend gone")
        shards.publish(job.job_id, {0: Partial(9, 1, 90, 40)})
        assert store.get_job(job.job_id) == stopped

    def test_finish_sets_final_counts_and_drops_the_lease(
        self, store: SqlJobStore, engine: Engine, clock: FakeClock
    ) -> None:
        job = self.job_in(store, S.VALIDATING)
        work = WorkStore(store, "engine-a", lease_seconds=30)
        work.save_plan(job.job_id, *self.plan())
        work.start_job(job.job_id)
        final = RecordCounts(processed=210, success=200, error=10, input_tokens=9, output_tokens=8)
        clock.advance(1)

        done = work.finish(job.job_id, S.PARTIALLY_COMPLETED, final, "10 records failed")

        assert done.status is S.PARTIALLY_COMPLETED
        assert done.counts == replace(final, total=210)
        assert done.end_time == clock.now
        assert done.message == "10 records failed"
        with engine.connect() as conn:
            lease = conn.execute(
                select(jobs.c.lease_owner, jobs.c.lease_expires_us).where(
                    jobs.c.job_id == job.job_id
                )
            ).one()
        assert tuple(lease) == (None, None)

    def test_parts_pending_lists_finished_jobs_only(self, store: SqlJobStore) -> None:
        running = self.job_in(store, S.IN_PROGRESS, "running")
        finished = self.job_in(store, S.COMPLETED, "finished")
        work = WorkStore(store, "engine-a", lease_seconds=30)
        work.set_parts_pending(running.job_id, True)
        work.set_parts_pending(finished.job_id, True)
        assert [j.job_id for j in work.jobs_with_parts_pending()] == [finished.job_id]
        work.set_parts_pending(finished.job_id, False)
        assert work.jobs_with_parts_pending() == []

    def test_expired_waiting_jobs(self, store: SqlJobStore, clock: FakeClock) -> None:
        waiting = self.create(store, make_spec("waiting", timeout_hours=24))
        running = self.job_in(store, S.IN_PROGRESS, "running")
        work = WorkStore(store, "engine-a", lease_seconds=30)
        assert work.expired_waiting_jobs() == []
        clock.advance(24 * 3600)
        assert work.expired_waiting_jobs() == [waiting.job_id]
        assert work.status_of([waiting.job_id, running.job_id]) == {
            waiting.job_id: S.SUBMITTED,
            running.job_id: S.IN_PROGRESS,
        }
        assert work.status_of([]) == {}
