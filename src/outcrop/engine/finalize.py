"""Finalising: join finished parts into the `.out` files, fill in unfinished records, write the manifest."""

from __future__ import annotations

from collections import defaultdict

from outcrop.domain.jobs import RecordCounts
from outcrop.domain.records import Manifest, error_line
from outcrop.engine.layout import JobLayout
from outcrop.engine.shard import read_shard_records
from outcrop.storage.base import ObjectStore
from outcrop.store.work import InputFile, Shard

_COPY_CHUNK = 1024 * 1024


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
                    with storage.open_read(
                        layout.output_bucket, layout.part_key(shard.shard_index)
                    ) as part:
                        while chunk := part.read(_COPY_CHUNK):
                            writer.write(chunk)
                    continue
                records = read_shard_records(storage, layout, file, shard)
                unprocessed += len(records)
                writer.write(
                    b"".join(error_line(r, 408, unprocessed_message) + b"\n" for r in records)
                )
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
