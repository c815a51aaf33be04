"""Live progress of one shard in flight, published to the store by the engine's monitor."""

from __future__ import annotations

from dataclasses import dataclass

from outcrop.store.shard_work import Partial


@dataclass
class Tally:
    success: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, success: int, errors: int, input_tokens: int, output_tokens: int) -> None:
        self.success += success
        self.errors += errors
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def partial(self) -> Partial:
        return Partial(self.success, self.errors, self.input_tokens, self.output_tokens)
