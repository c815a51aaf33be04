"""Validating: stream every input file once, check each line, and cut the work into shards."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from outcrop.domain.records import BOM, RecordFormatError, is_blank, parse_line
from outcrop.engine.layout import JobLayout
from outcrop.storage.base import ObjectStore, StorageError
from outcrop.store.work import InputFile, Shard

MAX_REPORTED_ERRORS = 10
# A job is cut into about this many shards, each between shard_records and max_shard_records
# records. Small jobs keep small shards (spread over engines, little recomputed after a crash);
# large ones get larger shards, whose fixed costs (a lease, a part object, a row update) then
# weigh little next to their records. A crash recomputes at most the shards in flight.
TARGET_SHARDS = 32


@dataclass(frozen=True)
class Limits:
    max_records_per_file: int
    max_records_per_job: int
    max_bytes_per_file: int
    max_bytes_per_job: int
    min_records_per_job: int
    max_line_bytes: int


@dataclass
class ValidationOutcome:
    files: list[InputFile] = field(default_factory=list)
    shards: list[Shard] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def fail(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(message)

    @property
    def message(self) -> str:
        more = self.error_count - len(self.errors)
        text = "Validation failed: " + "; ".join(self.errors)
        return text + (f"; and {more} more errors" if more > 0 else "")


def validate_input(
    storage: ObjectStore,
    layout: JobLayout,
    limits: Limits,
    shard_records: int,
    max_shard_records: int | None = None,
) -> ValidationOutcome:
    """Read the job's input once; return its files and shard plan, or the first errors.

    Raises StorageError for faults of the storage itself (the caller fails the job with it).
    """
    outcome = ValidationOutcome()
    job_records = 0
    job_bytes = 0
    found_any = False
    for file_index, (info, relative) in enumerate(layout.input_files(storage)):
        found_any = True
        name = relative
        if info.size > limits.max_bytes_per_file:
            outcome.fail(
                f"{name}: file is {info.size} bytes, above the limit of {limits.max_bytes_per_file}"
            )
            continue
        job_bytes += info.size
        if job_bytes > limits.max_bytes_per_job:
            outcome.fail(f"input is above the job size limit of {limits.max_bytes_per_job} bytes")
            break
        count = _validate_file(
            storage, layout, info.key, file_index, name, limits, shard_records, outcome
        )
        outcome.files.append(
            InputFile(file_index, info.key, layout.output_key(relative), count, info.size)
        )
        job_records += count
        if job_records > limits.max_records_per_job:
            outcome.fail(
                f"input has more than {limits.max_records_per_job} records, the per-job limit"
            )
            break
        if outcome.error_count >= MAX_REPORTED_ERRORS:
            break
    if not found_any:
        outcome.fail(f"no .jsonl file found at s3://{layout.input_bucket}/{layout.input_key}")
    elif outcome.error_count == 0 and job_records == 0:
        outcome.fail("the input contains no records")
    elif outcome.error_count == 0 and job_records < limits.min_records_per_job:
        outcome.fail(
            f"the input has {job_records} records; at least {limits.min_records_per_job} are required"
        )
    if outcome.error_count == 0:
        largest = max(shard_records, max_shard_records or shard_records)
        factor = job_records // (TARGET_SHARDS * shard_records)
        outcome.shards = _coarsen(outcome.shards, max(1, min(factor, largest // shard_records)))
    return outcome


def _coarsen(shards: list[Shard], factor: int) -> list[Shard]:
    """Join every `factor` consecutive shards of one file into one."""
    if factor == 1:
        return shards
    groups: list[list[Shard]] = []
    for shard in shards:
        if groups and groups[-1][0].file_index == shard.file_index and len(groups[-1]) < factor:
            groups[-1].append(shard)
        else:
            groups.append([shard])
    return [
        replace(group[0], shard_index=index, record_count=sum(s.record_count for s in group))
        for index, group in enumerate(groups)
    ]


def _validate_file(
    storage: ObjectStore,
    layout: JobLayout,
    key: str,
    file_index: int,
    name: str,
    limits: Limits,
    shard_records: int,
    outcome: ValidationOutcome,
) -> int:
    records = 0
    offset = 0
    shard_start: tuple[int, int] | None = None  # (first_line, start_offset) of the open shard
    shard_count = 0
    with storage.open_read(layout.input_bucket, key) as stream:
        for line_number, line in enumerate(stream, start=1):
            start = offset
            offset += len(line)
            if line_number == 1 and line.startswith(BOM):
                line = line[len(BOM) :]
            if len(line) > limits.max_line_bytes:
                outcome.fail(
                    f"{name} line {line_number}: line is longer than {limits.max_line_bytes} bytes"
                )
                continue
            if is_blank(line):
                continue
            try:
                parse_line(line)
            except RecordFormatError as exc:
                outcome.fail(f"{name} line {line_number}: {exc}")
                if outcome.error_count >= MAX_REPORTED_ERRORS:
                    break
                continue
            records += 1
            if records > limits.max_records_per_file:
                outcome.fail(
                    f"{name}: more than {limits.max_records_per_file} records, the per-file limit"
                )
                break
            if shard_start is None:
                shard_start = (line_number, start)
            shard_count += 1
            if shard_count == shard_records:
                _close_shard(outcome, file_index, shard_start, shard_count)
                shard_start, shard_count = None, 0
    if shard_start is not None:
        _close_shard(outcome, file_index, shard_start, shard_count)
    return records


def _close_shard(
    outcome: ValidationOutcome, file_index: int, start: tuple[int, int], count: int
) -> None:
    outcome.shards.append(
        Shard(
            shard_index=len(outcome.shards),
            file_index=file_index,
            first_line=start[0],
            start_offset=start[1],
            record_count=count,
        )
    )


__all__ = ["Limits", "StorageError", "ValidationOutcome", "validate_input"]
