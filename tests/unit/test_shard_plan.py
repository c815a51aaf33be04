"""Shard planning: a job is cut into about TARGET_SHARDS (32) shards within the configured bounds,
never across files, and every shard reads back exactly its own records."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from outcrop.engine import shard as shard_module
from outcrop.engine.layout import JobLayout
from outcrop.engine.validate import Limits, validate_input
from outcrop.storage.local import LocalObjectStore

LIMITS = Limits(10**7, 10**7, 10**10, 10**11, 1, 10**6)


def _write(path: Path, start: int, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for i in range(start, start + count):
            line = {"recordId": f"r{i:06d}", "modelInput": {"inputText": f"text {i}"}}
            out.write(orjson.dumps(line) + b"\n")


@pytest.mark.parametrize(
    ("sizes", "shard_records", "max_shard_records", "expected"),
    [
        # small job: the plain shard size
        ([300], 10, 1000, [10] * 30),
        # 5,000 records want shards of 5000 // (32 * 10) = 15 units, capped at 30 records
        ([5000], 10, 30, [30] * 166 + [20]),
        # within the bounds: 3 units of 10 per shard for 1,000 records
        ([1000], 10, 1000, [30] * 33 + [10]),
        # no shard spans two files
        ([650, 370], 10, 1000, [30] * 21 + [20] + [30] * 12 + [10]),
        # no maximum configured: every shard has shard_records records
        ([5000], 10, None, [10] * 500),
    ],
)
def test_shard_sizes(
    tmp_path: Path,
    sizes: list[int],
    shard_records: int,
    max_shard_records: int | None,
    expected: list[int],
) -> None:
    start = 0
    for n, size in enumerate(sizes):
        _write(tmp_path / "in-bucket" / "jobs" / f"part-{n}.jsonl", start, size)
        start += size
    storage = LocalObjectStore(tmp_path, "123456789012")
    layout = JobLayout.of("job000000001", "s3://in-bucket/jobs/", "s3://out-bucket/")

    outcome = validate_input(storage, layout, LIMITS, shard_records, max_shard_records)

    assert outcome.errors == []
    assert [s.record_count for s in outcome.shards] == expected
    assert [s.shard_index for s in outcome.shards] == list(range(len(expected)))
    read = [
        record.record_id
        for shard in outcome.shards
        for record in shard_module.shard_records(
            storage,
            layout,
            next(f for f in outcome.files if f.file_index == shard.file_index),
            shard,
        )
    ]
    assert read == [f"r{i:06d}" for i in range(sum(sizes))]
