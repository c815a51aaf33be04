"""Outcrop on PostgreSQL, in one process and scaled out over several.

`TestOneServerOnPostgres`: one `outcrop serve` (API and engine) on PostgreSQL runs a multi-file
job to exact output, stops a job mid-run, and fails a job in validation.

`TestScaleOut`: two API processes (`serve --no-engine`) and two `outcrop worker` processes share
one PostgreSQL database and one data dir (local buckets). A job created through API #1 and
watched through API #2 survives `kill -9` of a worker: the other worker takes over the dead
one's shards when their leases expire. Both workers run event dispatchers; every event is
delivered exactly once to a shared log target.

Each class gets a fresh PostgreSQL database (skipped without PostgreSQL, failed when CI=true).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.buckets import LocalBuckets
from tests.acceptance.conftest import (
    Watch,
    anthropic_body,
    assert_anthropic_output,
    assert_status_order,
    create_job,
    expected_anthropic,
    job_id_of,
    job_keys,
    jsonl,
    read_manifest,
    read_output,
    wait_for,
    wait_terminal,
    write_catalog,
)
from tests.integration.db import postgres_database
from tests.processes import OutcropWorker, migrate
from tests.server import OutcropServer

SLOW_MODEL = "acme.pg-slow-echo-v1"
SCALE_MODEL = "acme.scale-echo-v1"
LEASE_SECONDS = 2.0
STOPPED_MESSAGE = "The job was stopped before this record was processed."
LOG_TARGET = "all/0"  # rule "all", its first (unnamed) target


# -- PostgreSQL, read directly: what the processes wrote, not what they report ---------------


def pg_rows(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        return list(conn.execute(sql, params).fetchall())


@dataclass(frozen=True)
class ShardLease:
    shard_index: int
    owner: str | None
    expires_us: int | None
    done: bool


def shard_leases(database_url: str, job_id: str) -> list[ShardLease]:
    rows = pg_rows(
        database_url,
        "SELECT shard_index, lease_owner, lease_expires_us, done FROM shards"
        " WHERE job_id = %s ORDER BY shard_index",
        job_id,
    )
    return [ShardLease(r[0], r[1], r[2], bool(r[3])) for r in rows]


def now_us() -> int:
    return time.time_ns() // 1000


# -- inputs and their expected outputs -------------------------------------------------------


@dataclass
class InputFiles:
    """Input lines by path relative to the job's prefix, in S3 key order (= file index order)."""

    files: dict[str, list[dict[str, Any]]]

    def put(self, buckets: LocalBuckets, bucket: str, prefix: str) -> None:
        for relative, lines in self.files.items():
            buckets.put(bucket, f"{prefix}{relative}", jsonl(lines))

    @property
    def total(self) -> int:
        return sum(len(lines) for lines in self.files.values())

    def expected_ids(self, relative: str) -> list[str]:
        file_index = list(self.files).index(relative)
        return [
            line.get("recordId", f"L{file_index:03d}{number:07d}")
            for number, line in enumerate(self.files[relative], start=1)
        ]


def make_input(
    sizes: dict[str, int], tag: str, bad_every: int = 0, no_id_every: int = 0
) -> InputFiles:
    """Echo records; every `bad_every`-th body lacks max_tokens (a per-record 400) and every
    `no_id_every`-th line has no recordId (Outcrop names it L<file><line>)."""
    files: dict[str, list[dict[str, Any]]] = {}
    for file_index, (relative, count) in enumerate(sorted(sizes.items())):
        lines = []
        for i in range(count):
            body = anthropic_body(f"{tag} file {file_index} record {i} " + "word " * (i % 7), 6)
            if bad_every and i % bad_every == bad_every - 1:
                del body["max_tokens"]
            line: dict[str, Any] = {"modelInput": body}
            if not (no_id_every and i % no_id_every == 0):
                line["recordId"] = f"{tag}-{file_index}-{i:05d}"
            lines.append(line)
        files[relative] = lines
    return InputFiles(files)


def assert_exact_output(
    buckets: LocalBuckets,
    bucket_out: str,
    prefix: str,
    job: dict[str, Any],
    inputs: InputFiles,
    model_id: str,
) -> dict[str, Any]:
    """Completed: one .out per input file, every record exactly once in input order with the echo
    answer or a 400, the manifest and the job's counts exact; returns the manifest."""
    assert job["status"] == "Completed", job
    job_id = job_id_of(job["jobArn"])
    outputs = sorted(f"{relative}.out" for relative in inputs.files)
    assert job_keys(buckets, bucket_out, prefix, job_id) == sorted([*outputs, "manifest.json.out"])
    success = errors = input_tokens = output_tokens = 0
    for relative, lines in inputs.files.items():
        records = read_output(buckets, bucket_out, f"{prefix}{job_id}/{relative}.out")
        ids = [r["recordId"] for r in records]
        assert ids == inputs.expected_ids(relative), f"{relative}: records missing or repeated"
        for record, line in zip(records, lines, strict=True):
            assert record["modelInput"] == line["modelInput"]
            if "max_tokens" in line["modelInput"]:
                assert_anthropic_output(record, model_id)
                usage = expected_anthropic(line["modelInput"], model_id)["usage"]
                success += 1
                input_tokens += usage["input_tokens"]
                output_tokens += usage["output_tokens"]
            else:
                assert record["error"]["errorCode"] == 400, record
                errors += 1
    expected = {
        "totalRecordCount": inputs.total,
        "processedRecordCount": inputs.total,
        "successRecordCount": success,
        "errorRecordCount": errors,
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
    }
    assert read_manifest(buckets, bucket_out, prefix, job_id) == expected
    assert {k: job.get(k) for k in expected if "Token" not in k} == {
        k: v for k, v in expected.items() if "Token" not in k
    }
    return expected


# -- one server with its engine on PostgreSQL ------------------------------------------------


@dataclass
class Single:
    database_url: str
    server: OutcropServer
    buckets: LocalBuckets
    bedrock: Any
    bucket_in: str
    bucket_out: str


@pytest.fixture(scope="class")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Single]:
    root = tmp_path_factory.mktemp("pg-single")
    catalog = write_catalog(root / "catalog.toml", {SLOW_MODEL: 50})
    with postgres_database() as url:
        server = OutcropServer(
            data_dir=root / "data",
            env={
                "OUTCROP_DATABASE_URL": url,
                "OUTCROP_STORAGE": "local",
                "OUTCROP_CATALOG": str(catalog),
                "OUTCROP_SHARD_RECORDS": "4",
                "OUTCROP_MAX_SHARD_RECORDS": "4",
                "OUTCROP_RECORD_CONCURRENCY": "2",  # ~40 records/s on the slow model: stoppable
                "OUTCROP_PROGRESS_INTERVAL_S": "0.1",
                "OUTCROP_MANIFEST_INTERVAL_S": "0.3",
                "OUTCROP_LEASE_SECONDS": str(LEASE_SECONDS),
            },
        )
        try:
            server.start()
            buckets = LocalBuckets(server.data_dir)
            yield Single(
                url, server, buckets, server.client(), buckets.create("in"), buckets.create("out")
            )
        finally:
            server.stop()


class TestOneServerOnPostgres:
    def test_multi_file_job_completes_with_exact_output(self, single: Single) -> None:
        inputs = make_input(
            {"a.jsonl": 25, "sub/b.jsonl": 12, "sub/deeper/c.jsonl": 7},
            "multi",
            bad_every=9,
            no_id_every=5,
        )
        inputs.put(single.buckets, single.bucket_in, "multi/")
        arn = create_job(
            single.bedrock, f"s3://{single.bucket_in}/multi/", f"s3://{single.bucket_out}/m/"
        )
        job, watch = wait_terminal(single.bedrock, arn, timeout=60)

        assert_status_order(watch.statuses, "Completed")
        manifest = assert_exact_output(
            single.buckets, single.bucket_out, "m/", job, inputs, "outcrop.echo-v1"
        )
        assert manifest["errorRecordCount"] > 0
        # The job really lives in PostgreSQL: its row, its 12 shards (44 records, 4 per shard,
        # per file), all done, and the transitions the API reported.
        job_id = job_id_of(arn)
        assert pg_rows(
            single.database_url, "SELECT status FROM jobs WHERE job_id = %s", job_id
        ) == [("Completed",)]
        leases = shard_leases(single.database_url, job_id)
        assert len(leases) == 7 + 3 + 2 and all(s.done and s.owner is None for s in leases)

    def test_stop_mid_run_keeps_finished_records_and_marks_the_rest(self, single: Single) -> None:
        lines = [
            {"recordId": f"s{i:04d}", "modelInput": anthropic_body(f"stop record {i}", 4)}
            for i in range(300)
        ]
        single.buckets.put(single.bucket_in, "stop/in.jsonl", jsonl(lines))
        arn = create_job(
            single.bedrock,
            f"s3://{single.bucket_in}/stop/",
            f"s3://{single.bucket_out}/stop/",
            model_id=SLOW_MODEL,
        )
        watch = Watch()
        wait_for(
            lambda: watch.poll(single.bedrock, arn).get("processedRecordCount", 0) > 0,
            60,
            "the first processed records",
        )
        single.bedrock.stop_model_invocation_job(jobIdentifier=arn)
        job, _ = wait_terminal(single.bedrock, arn, timeout=60, watch=watch)

        assert_status_order(watch.statuses, "Stopped")
        job_id = job_id_of(arn)
        assert job_keys(single.buckets, single.bucket_out, "stop/", job_id) == [
            "in.jsonl.out",
            "manifest.json.out",
        ]
        records = read_output(single.buckets, single.bucket_out, f"stop/{job_id}/in.jsonl.out")
        assert [r["recordId"] for r in records] == [line["recordId"] for line in lines]
        answered = [r for r in records if "modelOutput" in r]
        stopped = [r for r in records if "error" in r]
        for record in answered:
            assert_anthropic_output(record, SLOW_MODEL)
        assert all(r["error"]["errorCode"] == 408 for r in stopped)
        assert all(r["error"]["errorMessage"] == STOPPED_MESSAGE for r in stopped)
        assert answered and stopped, (len(answered), len(stopped))
        manifest = read_manifest(single.buckets, single.bucket_out, "stop/", job_id)
        assert manifest == {
            "totalRecordCount": len(lines),
            "processedRecordCount": len(answered),
            "successRecordCount": len(answered),
            "errorRecordCount": 0,
            "inputTokenCount": sum(r["modelOutput"]["usage"]["input_tokens"] for r in answered),
            "outputTokenCount": sum(r["modelOutput"]["usage"]["output_tokens"] for r in answered),
        }
        assert (job["processedRecordCount"], job["successRecordCount"]) == (
            len(answered),
            len(answered),
        )

    def test_invalid_input_fails_validation(self, single: Single) -> None:
        good = json.dumps({"modelInput": anthropic_body("fine")}).encode()
        single.buckets.put(single.bucket_in, "bad/a.jsonl", good + b"\n{oops\n" + good + b"\n")
        arn = create_job(
            single.bedrock, f"s3://{single.bucket_in}/bad/", f"s3://{single.bucket_out}/bad/"
        )
        job, watch = wait_terminal(single.bedrock, arn, timeout=60)

        assert_status_order(watch.statuses, "Failed")
        assert job["message"] == "Validation failed: a.jsonl line 2: not valid JSON"
        assert job_keys(single.buckets, single.bucket_out, "bad/", job_id_of(arn)) == []

    def test_missing_input_bucket_fails_validation(self, single: Single) -> None:
        arn = create_job(
            single.bedrock, "s3://no-such-bucket-pg/in/", f"s3://{single.bucket_out}/none/"
        )
        job, _ = wait_terminal(single.bedrock, arn, timeout=60)
        assert job["status"] == "Failed"
        assert (
            job["message"] == "Validation failed: the input bucket no-such-bucket-pg does not exist"
        )


# -- two API processes and two workers on one database and one data dir ----------------------


@dataclass
class Cluster:
    database_url: str
    data_dir: Path
    env: dict[str, str]
    apis: list[OutcropServer] = field(default_factory=list)
    workers: list[OutcropWorker] = field(default_factory=list)
    events_log: Path = Path()
    restarts: int = 0

    @property
    def buckets(self) -> LocalBuckets:
        return LocalBuckets(self.data_dir)

    def api(self, number: int) -> Any:
        return self.apis[number - 1].client()

    def ensure_two_workers(self) -> None:
        """Replace a worker an earlier test killed, so each test starts with two."""
        for i, worker in enumerate(self.workers):
            if not worker.alive():
                self.restarts += 1
                self.workers[i] = OutcropWorker(
                    self.data_dir, self.env, f"worker-{i + 1}-r{self.restarts}"
                ).start()

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for api in self.apis:
            api.stop()


@pytest.fixture(scope="class")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scale-out")
    catalog = write_catalog(root / "catalog.toml", {SCALE_MODEL: 20})
    rules = root / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "all"\n\n[[rules.targets]]\ntype = "log"\npath = "events.jsonl"\n'
    )
    with postgres_database() as url:
        env = {
            "OUTCROP_DATABASE_URL": url,
            "OUTCROP_STORAGE": "local",
            "OUTCROP_CATALOG": str(catalog),
            "OUTCROP_EVENT_RULES": str(rules),
            "OUTCROP_LEASE_SECONDS": str(LEASE_SECONDS),
            "OUTCROP_SHARD_RECORDS": "100",
            "OUTCROP_MAX_SHARD_RECORDS": "100",
            "OUTCROP_SHARD_CONCURRENCY": "2",
            "OUTCROP_RECORD_CONCURRENCY": "4",
            "OUTCROP_PROGRESS_INTERVAL_S": "0.1",
            "OUTCROP_MANIFEST_INTERVAL_S": "0.5",
        }
        data_dir = root / "data"
        cluster = Cluster(url, data_dir, env, events_log=root / "events.jsonl")
        api_env = {**env, "OUTCROP_ENGINE": "false"}
        try:
            migrate(data_dir, env)
            # The first process creates the root credentials in the shared data dir; the
            # others then find them there (and in the database) instead of racing to create.
            cluster.apis.append(OutcropServer(data_dir=data_dir, env=api_env).start())
            cluster.workers = [OutcropWorker(data_dir, env, f"worker-{i}").spawn() for i in (1, 2)]
            cluster.apis.append(OutcropServer(data_dir=data_dir, env=api_env).start())
            for worker in cluster.workers:
                worker.wait_ready()
            yield cluster
        finally:
            cluster.close()


class TestScaleOut:
    def test_events_are_delivered_once_across_worker_dispatchers(self, cluster: Cluster) -> None:
        cluster.ensure_two_workers()
        buckets = cluster.buckets
        bucket_in, bucket_out = buckets.create("ev-in"), buckets.create("ev-out")
        arns = []
        for n in range(6):  # alternate the APIs; the workers race to route and deliver
            make_input({"in.jsonl": 30}, f"ev{n}").put(buckets, bucket_in, f"ev{n}/")
            arns.append(
                create_job(
                    cluster.api(1 + n % 2),
                    f"s3://{bucket_in}/ev{n}/",
                    f"s3://{bucket_out}/ev{n}/",
                    model_id=SCALE_MODEL,
                    name=f"events-{n}",
                )
            )
        for arn in arns:
            job, _ = wait_terminal(cluster.api(2), arn, timeout=90)
            assert job["status"] == "Completed", job

        job_ids = [job_id_of(arn) for arn in arns]
        stored = pg_rows(
            cluster.database_url,
            "SELECT event_id, job_id, status FROM events WHERE job_id = ANY(%s) ORDER BY seq",
            job_ids,
        )
        statuses = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
        for job_id in job_ids:
            assert [s for _, j, s in stored if j == job_id] == statuses, job_id

        # Settled: every delivery of these events is marked delivered, so none is still due.
        def all_delivered() -> bool:
            rows = pg_rows(
                cluster.database_url,
                "SELECT d.status, d.attempts, d.target FROM event_deliveries d"
                " JOIN events e ON e.seq = d.event_seq WHERE e.job_id = ANY(%s)",
                job_ids,
            )
            assert {r[2] for r in rows} <= {LOG_TARGET}, rows
            return len(rows) == len(stored) and all(r[:2] == ("delivered", 1) for r in rows)

        wait_for(all_delivered, 30, "every delivery to be delivered at its first attempt")
        logged = [json.loads(line) for line in cluster.events_log.read_text().splitlines()]
        ours = Counter(e["id"] for e in logged if e["resources"][0] in arns)
        assert sorted(ours) == sorted(event_id for event_id, _, _ in stored)
        assert [event_id for event_id, n in ours.items() if n != 1] == []

    def test_job_survives_kill_9_of_a_worker(self, cluster: Cluster) -> None:
        cluster.ensure_two_workers()
        buckets = cluster.buckets
        bucket_in, bucket_out = buckets.create("in"), buckets.create("out")
        inputs = make_input(
            {"part-1.jsonl": 1800, "nested/part-2.jsonl": 1200},
            "kill",
            bad_every=101,
            no_id_every=7,
        )
        inputs.put(buckets, bucket_in, "kill/")
        arn = create_job(
            cluster.api(1),
            f"s3://{bucket_in}/kill/",
            f"s3://{bucket_out}/o/",
            model_id=SCALE_MODEL,
            name="scale-out",
        )
        job_id = job_id_of(arn)
        api2, watch = cluster.api(2), Watch()
        owners_seen: set[str] = set()

        def both_workers_busy() -> bool:
            job = watch.poll(api2, arn)
            assert job["status"] not in ("Failed", "Stopped", "Completed"), job
            owners = {s.owner for s in shard_leases(cluster.database_url, job_id) if s.owner}
            owners_seen.update(owners)
            return job.get("processedRecordCount", 0) > 0 and len(owners) == 2

        wait_for(both_workers_busy, 60, "records processed while both workers hold shards")
        victim, survivor_process = cluster.workers
        victim.kill()
        killed_us = now_us()
        held = [s for s in shard_leases(cluster.database_url, job_id) if s.owner and not s.done]

        # The survivor renews its leases after the kill; the victim cannot, so every lease it
        # holds expires no later than one lease period after its death.
        def survivor_owner() -> str | None:
            late = {
                s.owner
                for s in shard_leases(cluster.database_url, job_id)
                if s.owner and s.expires_us and s.expires_us > killed_us + LEASE_SECONDS * 1e6
            }
            assert len(late) <= 1, late
            return next(iter(late)) if late else None

        survivor = wait_for(survivor_owner, 60, "the surviving worker to renew its leases")
        assert len(owners_seen) >= 2
        orphaned = [s.shard_index for s in held if s.owner != survivor]
        assert orphaned, f"the killed worker held no shard: {held}"

        job, _ = wait_terminal(api2, arn, timeout=120, watch=watch)
        assert survivor_process.alive(), cluster.logs()
        assert_status_order(watch.statuses, "Completed")
        assert_exact_output(buckets, bucket_out, "o/", job, inputs, SCALE_MODEL)
        final = {s.shard_index: s for s in shard_leases(cluster.database_url, job_id)}
        assert len(final) == 18 + 12
        # The dead worker's shards were finished by the only engine left alive.
        assert all(final[index].done for index in orphaned)
        assert not any(s.owner for s in final.values())


# -- routing events that commit out of seq order ---------------------------------------------


def test_routing_waits_for_events_that_commit_out_of_seq_order() -> None:
    """Processes write events concurrently, and a PostgreSQL sequence hands out seq values
    before their transactions commit: event 1 may become visible after event 2. The router
    must not move its cursor past 1 meanwhile, or event 1 is never delivered."""
    import threading
    import uuid

    import psycopg

    from outcrop.store.database import create_db_engine
    from outcrop.store.database import migrate as run_migrations
    from outcrop.store.outbox import OutboxStore
    from outcrop.store.sql import SqlJobStore

    def insert_event(conn: Any, job_id: str) -> int:
        event_id = str(uuid.uuid4())
        row = conn.execute(
            "INSERT INTO events (event_id, account_id, job_id, status, time_us, payload)"
            " VALUES (%s, '123456789012', %s, 'Submitted', 0, %s) RETURNING seq",
            (event_id, job_id, json.dumps({"id": event_id})),
        ).fetchone()
        return int(row[0])

    with postgres_database() as url:
        db = create_db_engine(url)
        run_migrations(db)
        outbox = OutboxStore(SqlJobStore(db), owner="router-test")
        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            with psycopg.connect(conninfo) as slow, psycopg.connect(conninfo) as fast:
                first = insert_event(slow, "job-slow")  # left uncommitted for now
                second = insert_event(fast, "job-fast")
                fast.commit()
                assert first < second
                routed: list[int] = []
                router = threading.Thread(
                    target=lambda: routed.append(outbox.route(lambda _e: ["t"]))
                )
                router.start()

                def router_waits_for_a_lock() -> bool:
                    rows = pg_rows(
                        url,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE events%%'",
                    )
                    return bool(rows[0][0]) or not router.is_alive()

                wait_for(router_waits_for_a_lock, 10, "the router to wait or return")
                assert router.is_alive(), f"routed {routed} while event {first} was uncommitted"
                slow.commit()
                router.join(10)
                assert routed == [2]
            seqs = pg_rows(url, "SELECT event_seq FROM event_deliveries ORDER BY event_seq")
            assert seqs == [(first,), (second,)]
        finally:
            db.dispose()
