"""A job's output objects for the console: listing, a preview of the first records, the manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from outcrop.domain.jobs import Job
from outcrop.engine.layout import PARTS_DIR, JobLayout
from outcrop.storage.base import ObjectInfo, ObjectStore, StorageError

MAX_LISTED = 200
PREVIEW_LINES = 5
PREVIEW_LINE_CHARS = 2000
MANIFEST_LIMIT = 256 * 1024
DOWNLOAD_CHUNK = 64 * 1024


@dataclass(frozen=True)
class OutputFile:
    key: str
    name: str  # relative to the job's output root
    size: int
    is_part: bool


@dataclass
class JobOutput:
    files: list[OutputFile] = field(default_factory=list)
    truncated: bool = False
    preview_of: str | None = None
    preview: list[str] = field(default_factory=list)
    manifest: str | None = None
    problem: str | None = None


def layout_of(job: Job) -> JobLayout:
    return JobLayout.of(job.job_id, job.spec.input_s3_uri, job.spec.output_s3_uri)


def _files(storage: ObjectStore, layout: JobLayout) -> tuple[list[OutputFile], bool]:
    found: list[OutputFile] = []
    for info in storage.list_objects(layout.output_bucket, layout.output_root):
        if len(found) == MAX_LISTED:
            return found, True
        name = info.key[len(layout.output_root) :]
        found.append(OutputFile(info.key, name, info.size, name.startswith(PARTS_DIR + "/")))
    return found, False


def _preview(storage: ObjectStore, bucket: str, key: str) -> list[str]:
    lines: list[str] = []
    with storage.open_read(bucket, key) as stream:
        for raw in stream:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if len(text) > PREVIEW_LINE_CHARS:
                text = text[:PREVIEW_LINE_CHARS] + " …"
            lines.append(text)
            if len(lines) == PREVIEW_LINES:
                break
    return lines


def job_output(storage: ObjectStore | None, job: Job) -> JobOutput:
    """Everything the details page shows from storage; a storage fault becomes `problem`."""
    result = JobOutput()
    if storage is None:
        result.problem = "Object storage is not available in this process."
        return result
    layout = layout_of(job)
    try:
        result.files, result.truncated = _files(storage, layout)
        outs = [f for f in result.files if f.name.endswith(".out") and not f.is_part]
        first = next((f for f in outs if f.name != "manifest.json.out"), None)
        if first is None:  # still running: read finished parts
            first = next((f for f in result.files if f.is_part), None)
        if first is not None:
            result.preview_of = first.name
            result.preview = _preview(storage, layout.output_bucket, first.key)
        if storage.head(layout.output_bucket, layout.manifest_key) is not None:
            raw = storage.read_bytes(layout.output_bucket, layout.manifest_key, MANIFEST_LIMIT)
            result.manifest = _pretty(raw)
    except StorageError as exc:
        result.problem = exc.message
    return result


def _pretty(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    try:
        lines = [json.dumps(json.loads(line), indent=2) for line in text.splitlines() if line]
    except ValueError:
        return text
    return "\n".join(lines)


def download_target(job: Job, key: str) -> tuple[str, str] | None:
    """(bucket, key) when `key` is one of this job's output objects, else None."""
    layout = layout_of(job)
    if not key.startswith(layout.output_root) or ".." in key.split("/"):
        return None
    return layout.output_bucket, key


def find_object(storage: ObjectStore, bucket: str, key: str) -> ObjectInfo | None:
    return storage.head(bucket, key)


def stream_object(storage: ObjectStore, bucket: str, key: str) -> Iterator[bytes]:
    """Chunks of the object; a sync iterator that Starlette runs off the event loop."""
    with storage.open_read(bucket, key) as stream:
        while chunk := stream.read(DOWNLOAD_CHUNK):
            yield chunk
