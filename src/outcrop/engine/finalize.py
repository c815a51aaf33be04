"""Finalising: join finished parts into the `.out` files, fill in unfinished records, write the manifest."""

from __future__ import annotations

from collections import defaultdict

from outcrop.domain.clock import utcnow
from outcrop.domain.jobs import Job, JobStatus, RecordCounts
from outcrop.domain.records import Manifest, error_line
from outcrop.engine.active import unprocessed_message
from outcrop.engine.layout import JobLayout
from outcrop.engine.shard import READ_BLOCK, shard_records
from outcrop.storage.base import ObjectStore
from outcrop.store.work import InputFile, Shard, WorkStore


def assemble_outputs(
    storage: ObjectStore,
    layout: JobLayout,
    files: list[InputFile],
    shards: list[Shard],
    unprocessed_message: str,
) -> int:
    """Write every `.out` file in input order; returns how many records were never processed.

    Each file is written atomically, so a crash here leaves either the old state or the whole
    file, and the step can simply run again.
    """
    by_file: dict[int, list[Shard]] = defaultdict(list)
    for shard in shards:
        by_file[shard.file_index].append(shard)
    unprocessed = 0
    for file in files:
        with storage.open_write(layout.output_bucket, file.output_key) as writer:
            for shard in by_file[file.file_index]:
                if shard.done:
                    storage.append_object(
                        writer,
                        layout.output_bucket,
                        layout.part_key(shard.shard_index, shard.part_owner or ""),
                    )
                    continue
                block: list[bytes] = []
                for record in shard_records(storage, layout, file, shard):
                    block.append(error_line(record, 408, unprocessed_message) + b"\n")
                    if len(block) == READ_BLOCK:
                        writer.write(b"".join(block))
                        unprocessed, block = unprocessed + len(block), []
                writer.write(b"".join(block))
                unprocessed += len(block)
    return unprocessed


def manifest_of(total: int, counts: RecordCounts) -> Manifest:
    return Manifest(
        total=total,
        processed=counts.processed or 0,
        success=counts.success or 0,
        error=counts.error or 0,
        input_tokens=counts.input_tokens or 0,
        output_tokens=counts.output_tokens or 0,
    )


def write_manifest(storage: ObjectStore, layout: JobLayout, manifest: Manifest) -> None:
    storage.put_bytes(layout.output_bucket, layout.manifest_key, manifest.to_json())


def delete_parts(storage: ObjectStore, layout: JobLayout) -> None:
    storage.delete_prefix(layout.output_bucket, layout.parts_prefix)


def finalize_job(work: WorkStore, storage: ObjectStore, job: Job) -> Job:
    """Bring a running job whose shards are all settled to its terminal status.

    Stopping becomes Stopped; a job past its deadline with unprocessed records becomes
    PartiallyCompleted; anything else Completed. Safe to run again after a crash at any point:
    the outputs are assembled once (recorded in the store), then the parts are removed, and only
    then is the job finished, so a terminal job never shows its parts.
    """
    layout = JobLayout.of(job.job_id, job.spec.input_s3_uri, job.spec.output_s3_uri)
    if job.status == JobStatus.STOPPING:
        reason: JobStatus | None = JobStatus.STOPPED
    elif utcnow() >= job.job_expiration_time:
        reason = JobStatus.PARTIALLY_COMPLETED
    else:
        reason = None
    shards = work.shards(job.job_id)
    unprocessed = sum(s.record_count for s in shards if not s.done)
    counts = work.durable_counts(job.job_id)
    if not work.outputs_assembled(job.job_id):
        assemble_outputs(
            storage, layout, work.files(job.job_id), shards, unprocessed_message(reason)
        )
        write_manifest(storage, layout, manifest_of(job.counts.total or 0, counts))
        work.mark_outputs_assembled(job.job_id)
    delete_parts(storage, layout)
    storage.discard_incomplete(layout.output_bucket, layout.output_root)
    if reason == JobStatus.STOPPED:
        target = JobStatus.STOPPED
    elif reason == JobStatus.PARTIALLY_COMPLETED and unprocessed:
        target = JobStatus.PARTIALLY_COMPLETED
    else:
        target = JobStatus.COMPLETED
    finished = work.finish(job.job_id, target, counts)
    # Once more now that the job is terminal: a progress manifest that another engine wrote
    # while this one assembled cannot be the last word.
    write_manifest(storage, layout, manifest_of(job.counts.total or 0, counts))
    work.set_parts_pending(job.job_id, False)
    return finished
