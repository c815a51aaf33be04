"""Live counters of a running job: durable figures plus what is in flight in this process."""

from __future__ import annotations

from dataclasses import dataclass

from outcrop.domain.jobs import RecordCounts


@dataclass
class JobProgress:
    base: RecordCounts  # summed over shards that were durably done before this run started
    success: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, success: int, errors: int, input_tokens: int, output_tokens: int) -> None:
        self.success += success
        self.errors += errors
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def snapshot(self) -> RecordCounts:
        success = (self.base.success or 0) + self.success
        errors = (self.base.error or 0) + self.errors
        return RecordCounts(
            processed=success + errors,
            success=success,
            error=errors,
            input_tokens=(self.base.input_tokens or 0) + self.input_tokens,
            output_tokens=(self.base.output_tokens or 0) + self.output_tokens,
        )
