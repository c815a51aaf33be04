"""How the console shows jobs: progress shares, durations, throughput and ETA, inline errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from outcrop.domain.jobs import Job, JobStatus, Transition

BADGE_TONES = {
    JobStatus.SUBMITTED: "neutral",
    JobStatus.VALIDATING: "info",
    JobStatus.SCHEDULED: "info",
    JobStatus.IN_PROGRESS: "info",
    JobStatus.COMPLETED: "success",
    JobStatus.PARTIALLY_COMPLETED: "warning",
    JobStatus.FAILED: "danger",
    JobStatus.STOPPING: "warning",
    JobStatus.STOPPED: "neutral",
    JobStatus.EXPIRED: "danger",
}
STOPPABLE = frozenset(
    {
        JobStatus.SUBMITTED,
        JobStatus.VALIDATING,
        JobStatus.SCHEDULED,
        JobStatus.IN_PROGRESS,
    }
)


@dataclass(frozen=True)
class Progress:
    total: int | None
    processed: int
    success: int
    error: int

    @property
    def known(self) -> bool:
        return self.total is not None and self.total > 0

    def _share(self, part: int) -> float:
        if not self.total:
            return 0.0
        return round(min(100.0, 100.0 * part / self.total), 1)

    @property
    def percent(self) -> float:
        return self._share(self.processed)

    @property
    def success_pct(self) -> float:
        return self._share(self.success)

    @property
    def error_pct(self) -> float:
        return self._share(self.error)


def progress_of(job: Job) -> Progress:
    c = job.counts
    return Progress(c.total, c.processed or 0, c.success or 0, c.error or 0)


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_attr(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat()


def span(seconds: float | None) -> str:
    """A duration the way people read it: 45s, 3m 12s, 2h 05m, 1d 04h."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86_400}d {s % 86_400 // 3600:02d}h"


def duration(job: Job, now: datetime) -> str:
    end = job.end_time or now
    return span((end - job.submit_time).total_seconds())


@dataclass(frozen=True)
class Rate:
    records_per_s: float | None
    eta_s: float | None


def rate(job: Job, transitions: list[Transition], now: datetime) -> Rate:
    """Throughput from the processed count over the time since the job went InProgress."""
    started = next((t.at for t in transitions if t.status == JobStatus.IN_PROGRESS), None)
    processed = job.counts.processed or 0
    if started is None or processed == 0:
        return Rate(None, None)
    end = job.end_time or now
    elapsed = (end - started).total_seconds()
    if elapsed <= 0:
        return Rate(None, None)
    per_s = processed / elapsed
    eta = None
    if job.status == JobStatus.IN_PROGRESS and job.counts.total:
        eta = max(0, job.counts.total - processed) / per_s
    return Rate(per_s, eta)


_VALUE_AT = re.compile(r"Value (?:null|'.*?') at '(?P<path>[^']+)' failed to satisfy constraint: ")


def field_errors(message: str) -> dict[str, str]:
    """Split an API validation message into one message per top-level request member."""
    found: dict[str, str] = {}
    matches = list(_VALUE_AT.finditer(message))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(message)
        text = message[match.start() : end].rstrip("; ")
        path = match["path"]
        top = path.split(".", 1)[0].split("[", 1)[0]
        found.setdefault(top, text)
    if not matches:
        for name in ("inputDataConfig", "outputDataConfig"):
            if message.startswith(f"{name}:"):
                found[name] = message
    return found
