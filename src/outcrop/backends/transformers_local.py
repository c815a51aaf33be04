"""Batched text generation from a local Hugging Face causal LM saved with save_pretrained."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from outcrop.backends._model_cache import MODEL_CACHE, ModelThreads, cpu_threads
from outcrop.backends.base import BackendUnavailable, CatalogError, require_option
from outcrop.formats.base import InferenceRequest, InferenceResponse, RecordError, StopReason

if TYPE_CHECKING:
    from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

NAME = "transformers"
_OPTIONS = {"path", "batch_size", "do_sample", "seed", "max_new_tokens_default", "device"}

# (sample?, temperature, top_p, top_k): requests sharing a key share one generate() call.
GroupKey = tuple[bool, float | None, float | None, int | None]


@dataclass
class _Loaded:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    eos_ids: frozenset[int]
    context: int | None
    # Every invoke runs whole on this thread, one at a time: seeding is process-global too.
    thread: ModelThreads


@dataclass(frozen=True)
class _Prepared:
    index: int
    ids: list[int]
    max_new: int
    key: GroupKey
    stop_sequences: tuple[str, ...]


def _use_every_cpu_thread() -> None:
    # Set, not inherited: another model's threads may have lowered torch's count process-wide.
    import torch

    torch.set_num_threads(cpu_threads())


class TransformersBackend:
    """Generates text for `chat` and `completion` requests with one process-wide model copy.

    Decoding is greedy unless sampling is asked for: a request with temperature > 0 samples
    (with its temperature/top_p/top_k), a request with temperature 0 is greedy, and a request
    without a temperature follows the backend's `do_sample` option. Greedy decoding ignores
    top_p/top_k. With `seed`, every generate() call starts from that seed, so a batch's output
    is reproducible for the same batch composition.

    Token counts: `input_tokens` is the rendered prompt's length in the model's tokenizer
    (template and special tokens included). `output_tokens` counts the generated token ids that
    were kept: those before EOS (end_turn), the first max_tokens (max_tokens), or those up to and
    including the token that completed the earliest stop sequence (stop_sequence), which is where
    generation would have stopped. A request's max_tokens is clamped to the model's context.
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int = 8,
        do_sample: bool = False,
        seed: int | None = None,
        max_new_tokens_default: int = 256,
        device: str = "cpu",
    ) -> None:
        self.path = path.resolve()
        self.max_batch_size = batch_size
        self.do_sample = do_sample
        self.seed = seed
        self.max_new_tokens_default = max_new_tokens_default
        self.device = device

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TransformersBackend:
        """Build from a catalog entry's options; raise CatalogError for unknown or bad options."""
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise CatalogError(f"backend '{NAME}' has no option(s) {', '.join(unknown)}")
        path = Path(require_option(options, "path", str, NAME)).expanduser()
        if not path.is_dir():
            raise CatalogError(f"backend '{NAME}' option 'path': no directory {path}")
        given = {name: options[name] for name in options if name != "path"}
        kinds: dict[str, type] = {
            "batch_size": int,
            "do_sample": bool,
            "seed": int,
            "max_new_tokens_default": int,
            "device": str,
        }
        for name in given:
            require_option(given, name, kinds[name], NAME)
        for name in ("batch_size", "max_new_tokens_default"):
            if given.get(name, 1) < 1:
                raise CatalogError(f"backend '{NAME}' option '{name}' must be >= 1")
        return cls(path, **given)

    @property
    def cache_key(self) -> tuple[str, str, str]:
        """Backends with equal keys share one loaded model."""
        return (NAME, str(self.path), self.device)

    def _load(self) -> _Loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        # padding_side is not saved with the tokenizer; decoder-only batches must pad on the left.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(self.path))
        # transformers wraps Module.to in a way that hides its signature from mypy.
        model = model.to(self.device)  # type: ignore[arg-type]
        model.eval()
        eos: set[int] = set()
        for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, list):
                eos.update(source)
        context = getattr(model.config, "max_position_embeddings", None)
        thread = ModelThreads("outcrop-generate", setup=_use_every_cpu_thread)
        return _Loaded(model, tokenizer, frozenset(eos), context, thread)

    @property
    def _loaded(self) -> _Loaded:
        try:
            return MODEL_CACHE.get(self.cache_key, self._load)
        except Exception as exc:  # a model that cannot load fails every record alike
            raise BackendUnavailable(f"backend '{NAME}': cannot load {self.path}: {exc}") from exc

    async def invoke(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]:
        """Generate for the batch on the model's thread; bad records get their own RecordError."""
        cached = MODEL_CACHE.peek(self.cache_key)
        # Loading blocks for seconds on first use: keep it off the event loop too.
        loaded = (
            cached if isinstance(cached, _Loaded) else await asyncio.to_thread(lambda: self._loaded)
        )
        return await loaded.thread.run(self._run_batch, loaded, list(requests))

    async def aclose(self) -> None:
        """Nothing to release: the model stays cached for other jobs in this process."""

    def _run_batch(
        self, loaded: _Loaded, requests: list[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]:
        results: list[InferenceResponse | RecordError | None] = [None] * len(requests)
        groups: dict[GroupKey, list[_Prepared]] = {}
        for index, request in enumerate(requests):
            prepared = self._prepare(loaded, index, request)
            if isinstance(prepared, RecordError):
                results[index] = prepared
            else:
                groups.setdefault(prepared.key, []).append(prepared)
        for key, members in groups.items():
            for start in range(0, len(members), self.max_batch_size):
                chunk = members[start : start + self.max_batch_size]
                for item, response in zip(chunk, self._generate(loaded, key, chunk), strict=True):
                    results[item.index] = response
        return [r for r in results if r is not None]

    def _prepare(
        self, loaded: _Loaded, index: int, request: InferenceRequest
    ) -> _Prepared | RecordError:
        tokenizer = loaded.tokenizer
        if request.kind == "embedding":
            return RecordError(400, "embedding request: this model only generates text")
        if request.kind == "completion":
            if request.prompt is None:
                return RecordError(400, "prompt: field required")
            ids = tokenizer(request.prompt, add_special_tokens=True)["input_ids"]
        elif not request.messages:
            return RecordError(400, "messages: field required")
        elif tokenizer.chat_template:
            conversation = [{"role": "system", "content": request.system}] if request.system else []
            conversation += [{"role": m.role, "content": m.text} for m in request.messages]
            try:
                rendered = tokenizer.apply_chat_template(
                    conversation, tokenize=False, add_generation_prompt=True
                )
            except Exception as exc:  # templates raise on inputs they reject (e.g. a system role)
                return RecordError(400, f"messages: the model's chat template refused them: {exc}")
            # The template already wrote any BOS it wants; the tokenizer must not add another.
            ids = tokenizer(str(rendered), add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(_plain_chat(request), add_special_tokens=True)["input_ids"]

        max_new = request.max_tokens or self.max_new_tokens_default
        if loaded.context is not None:
            if len(ids) >= loaded.context:
                return RecordError(
                    400, f"prompt is {len(ids)} tokens; this model's context is {loaded.context}"
                )
            max_new = min(max_new, loaded.context - len(ids))
        return _Prepared(
            index, list(ids), max_new, self._group_key(request), request.stop_sequences
        )

    def _group_key(self, request: InferenceRequest) -> GroupKey:
        temperature = request.temperature
        sample = self.do_sample if temperature is None else temperature > 0
        if not sample:
            return (False, None, None, None)
        return (True, temperature, request.top_p, request.top_k)

    def _generate(
        self, loaded: _Loaded, key: GroupKey, chunk: list[_Prepared]
    ) -> list[InferenceResponse]:
        import torch

        sample, temperature, top_p, top_k = key
        tokenizer = loaded.tokenizer
        batch = tokenizer.pad({"input_ids": [item.ids for item in chunk]}, return_tensors="pt")
        # Greedy must unset any sampling defaults the model ships in generation_config.json.
        options: dict[str, Any] = {"temperature": None, "top_p": None, "top_k": None}
        if sample:
            options = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
            options = {name: value for name, value in options.items() if value is not None}
        started = time.perf_counter()
        with contextlib.ExitStack() as stack:
            if self.seed is not None:
                stack.enter_context(torch.random.fork_rng(devices=[]))
                torch.manual_seed(self.seed)
            # PreTrainedModel does not declare generate(); causal LMs get it from GenerationMixin.
            output = cast("GenerationMixin", loaded.model).generate(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
                max_new_tokens=max(item.max_new for item in chunk),
                do_sample=sample,
                pad_token_id=tokenizer.pad_token_id,
                **options,
            )
        latency_ms = round((time.perf_counter() - started) * 1000)
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        width = batch["input_ids"].shape[1]
        return [
            self._finish(loaded, item, sequences[row, width:].tolist(), latency_ms)
            for row, item in enumerate(chunk)
        ]

    def _finish(
        self, loaded: _Loaded, item: _Prepared, generated: list[int], latency_ms: int
    ) -> InferenceResponse:
        eos_at = next((i for i, t in enumerate(generated) if t in loaded.eos_ids), None)
        reason: StopReason
        if eos_at is not None and eos_at < item.max_new:
            ids, reason = generated[:eos_at], "end_turn"
        else:
            ids = generated[: item.max_new]
            # Shorter than asked without EOS means something else stopped generation.
            reason = "max_tokens" if len(ids) == item.max_new else "end_turn"
        text = _decode(loaded, ids)
        stop = _earliest_stop(text, item.stop_sequences)
        if stop is None:
            return InferenceResponse(
                text=text,
                stop_reason=reason,
                input_tokens=len(item.ids),
                output_tokens=len(ids),
                latency_ms=latency_ms,
            )
        at, sequence = stop
        return InferenceResponse(
            text=text[:at],
            stop_reason="stop_sequence",
            stop_sequence=sequence,
            input_tokens=len(item.ids),
            output_tokens=_tokens_until(loaded, ids, sequence),
            latency_ms=latency_ms,
        )


def _plain_chat(request: InferenceRequest) -> str:
    """The rendering for tokenizers without a chat template."""
    lines = [f"System: {request.system}"] if request.system else []
    lines += [f"{'User' if m.role == 'user' else 'Assistant'}: {m.text}" for m in request.messages]
    lines.append("Assistant:")
    return "\n".join(lines)


def _decode(loaded: _Loaded, ids: list[int]) -> str:
    return str(loaded.tokenizer.decode(ids, skip_special_tokens=True))


def _earliest_stop(text: str, stop_sequences: tuple[str, ...]) -> tuple[int, str] | None:
    """(index, sequence) of the stop sequence that starts first in text; ties go to list order."""
    found = [(text.find(s), n, s) for n, s in enumerate(stop_sequences) if s and s in text]
    if not found:
        return None
    at, _, sequence = min(found)
    return at, sequence


def _tokens_until(loaded: _Loaded, ids: list[int], sequence: str) -> int:
    """The fewest leading ids whose decoding contains `sequence` (binary search; it only grows)."""
    low, high = 1, len(ids)
    while low < high:
        middle = (low + high) // 2
        if sequence in _decode(loaded, ids[:middle]):
            high = middle
        else:
            low = middle + 1
    return high
