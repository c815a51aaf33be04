"""Job statuses, the transitions between them, job ids and ARNs."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import unquote

from outcrop.errors import ConflictError


class JobStatus(StrEnum):
    SUBMITTED = "Submitted"
    VALIDATING = "Validating"
    SCHEDULED = "Scheduled"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    PARTIALLY_COMPLETED = "PartiallyCompleted"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    EXPIRED = "Expired"


TERMINAL_STATUSES = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.PARTIALLY_COMPLETED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
        JobStatus.EXPIRED,
    }
)
ACTIVE_STATUSES = frozenset(set(JobStatus) - TERMINAL_STATUSES)
# Statuses in which the engine still owes the job some work.
ENGINE_STATUSES = frozenset(
    {
        JobStatus.SUBMITTED,
        JobStatus.VALIDATING,
        JobStatus.SCHEDULED,
        JobStatus.IN_PROGRESS,
        JobStatus.STOPPING,
    }
)

_S = JobStatus
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _S.SUBMITTED: frozenset({_S.VALIDATING, _S.FAILED, _S.STOPPING}),
    _S.VALIDATING: frozenset({_S.SCHEDULED, _S.FAILED, _S.STOPPING, _S.EXPIRED}),
    _S.SCHEDULED: frozenset({_S.IN_PROGRESS, _S.EXPIRED, _S.FAILED, _S.STOPPING}),
    _S.IN_PROGRESS: frozenset({_S.COMPLETED, _S.PARTIALLY_COMPLETED, _S.FAILED, _S.STOPPING}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.FAILED}),
    _S.COMPLETED: frozenset(),
    _S.PARTIALLY_COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.STOPPED: frozenset(),
    _S.EXPIRED: frozenset(),
}


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise ConflictError unless `current -> target` is a transition of Bedrock's status machine."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise ConflictError(f"A job in status {current} cannot move to {target}.")


_ID_ALPHABET = string.ascii_lowercase + string.digits
JOB_ID_LENGTH = 12
_JOB_ID_RE = re.compile(r"[a-z0-9]{12}")
_JOB_ARN_RE = re.compile(
    r"arn:aws(-[^:]+)?:bedrock:(?P<region>[a-z0-9-]{1,20}):(?P<account>[0-9]{12})"
    r":model-invocation-job/(?P<job_id>[a-z0-9]{12})"
)


def new_job_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(JOB_ID_LENGTH))


def job_arn(region: str, account_id: str, job_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{account_id}:model-invocation-job/{job_id}"


@dataclass(frozen=True)
class JobRef:
    """A parsed job identifier: the id, plus the account when it came as an ARN."""

    job_id: str
    account_id: str | None = None
    region: str | None = None


def parse_job_identifier(identifier: str) -> JobRef | None:
    """Parse a 12-character job id or a job ARN (percent-encoded or not); None if it is neither.

    A job name is never an identifier, as in Bedrock.
    """
    text = unquote(identifier)
    if _JOB_ID_RE.fullmatch(text):
        return JobRef(job_id=text)
    match = _JOB_ARN_RE.fullmatch(text)
    if match is None:
        return None
    return JobRef(job_id=match["job_id"], account_id=match["account"], region=match["region"])


@dataclass(frozen=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True)
class JobSpec:
    """What a CreateModelInvocationJob request asks for, already validated against the model."""

    job_name: str
    model_id: str
    role_arn: str
    input_s3_uri: str
    output_s3_uri: str
    timeout_hours: int
    invocation_type: str
    client_request_token: str | None = None
    input_format: str | None = None
    input_bucket_owner: str | None = None
    output_kms_key_id: str | None = None
    output_bucket_owner: str | None = None
    vpc_config: dict[str, list[str]] | None = None
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True)
class RecordCounts:
    total: int | None = None
    processed: int | None = None
    success: int | None = None
    error: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Job:
    job_id: str
    account_id: str
    region: str
    spec: JobSpec
    status: JobStatus
    submit_time: datetime
    last_modified_time: datetime
    job_expiration_time: datetime
    message: str | None = None
    end_time: datetime | None = None
    counts: RecordCounts = RecordCounts()

    @property
    def arn(self) -> str:
        return job_arn(self.region, self.account_id, self.job_id)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Transition:
    status: JobStatus
    at: datetime
    message: str | None = None


@dataclass(frozen=True)
class ListQuery:
    """ListModelInvocationJobs filters and order; `after` is the keyset cursor (submit_us, job_id)."""

    status: JobStatus | None = None
    name_contains: str | None = None
    submitted_after: datetime | None = None
    submitted_before: datetime | None = None
    ascending: bool = False
    limit: int = 1000
    after: tuple[int, str] | None = None
