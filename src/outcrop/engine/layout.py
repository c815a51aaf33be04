"""Where a job's input files are and where their outputs, parts and manifest go."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from outcrop.storage.base import ObjectInfo, ObjectStore
from outcrop.storage.uri import parse_s3_uri

PARTS_DIR = "_outcrop_parts"


@dataclass(frozen=True)
class JobLayout:
    """The object keys of one job.

    Output goes to `<outputS3Uri>/<jobId>/<path relative to the input prefix>.out`. Finished
    shards are kept as part objects under `<outputS3Uri>/<jobId>/_outcrop_parts/` until the job
    ends; then they are joined into the `.out` files and removed.
    """

    input_bucket: str
    input_key: str
    output_bucket: str
    output_root: str  # "<prefix>/<jobId>/" (no leading slash)

    @classmethod
    def of(cls, job_id: str, input_uri: str, output_uri: str) -> JobLayout:
        source = parse_s3_uri(input_uri)
        target = parse_s3_uri(output_uri)
        prefix = target.key.rstrip("/")
        root = f"{prefix}/{job_id}/" if prefix else f"{job_id}/"
        return cls(source.bucket, source.key, target.bucket, root)

    def output_key(self, relative: str) -> str:
        return f"{self.output_root}{relative}.out"

    @property
    def manifest_key(self) -> str:
        return f"{self.output_root}manifest.json.out"

    @property
    def parts_prefix(self) -> str:
        return f"{self.output_root}{PARTS_DIR}/"

    def part_key(self, shard_index: int, owner: str) -> str:
        """Each engine writes a shard's part under its own name (see shards.part_owner); shards
        finished before revision 0004 have no owner and kept the plain name."""
        suffix = f"-{owner}" if owner else ""
        return f"{self.parts_prefix}{shard_index:08d}{suffix}.jsonl"

    def input_files(self, storage: ObjectStore) -> Iterator[tuple[ObjectInfo, str]]:
        """Every `.jsonl` input with its path relative to the input prefix, in key order.

        An s3Uri naming one `.jsonl` object is that file alone; otherwise it is a folder: a
        trailing slash is implied, so `s3://b/in` never picks up `s3://b/input2/...`.
        """
        key = self.input_key
        if key and not key.endswith("/"):
            single = storage.head(self.input_bucket, key)
            if single is not None and key.endswith(".jsonl"):
                yield single, key.rsplit("/", 1)[-1]
                return
            key += "/"
        for info in storage.list_objects(self.input_bucket, key):
            if info.key.endswith(".jsonl"):
                yield info, info.key[len(key) :]
