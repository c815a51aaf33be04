"""Backend kinds by name, imported lazily so that unused heavy dependencies are never loaded."""

from __future__ import annotations

import importlib
from typing import Any

from outcrop.backends.base import Backend, CatalogError

# name -> (module, class); each class offers `from_options(options) -> Backend`.
BACKENDS: dict[str, tuple[str, str]] = {
    "echo": ("outcrop.backends.echo", "EchoBackend"),
    "openai": ("outcrop.backends.openai_compat", "OpenAIBackend"),
    "sentence-transformers": (
        "outcrop.backends.sentence_transformers",
        "SentenceTransformersBackend",
    ),
    "transformers": ("outcrop.backends.transformers_local", "TransformersBackend"),
    "bedrock": ("outcrop.backends.bedrock_runtime", "BedrockRuntimeBackend"),
}


def create_backend(name: str, options: dict[str, Any]) -> Backend:
    """Instantiate a backend from catalog options; models load later, on first use."""
    if name not in BACKENDS:
        raise CatalogError(f"unknown backend '{name}' (known: {', '.join(sorted(BACKENDS))})")
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CatalogError(
            f"backend '{name}' is not available: {exc}. Install Outcrop's extras (make install)."
        ) from None
    backend: Backend = getattr(module, class_name).from_options(dict(options))
    return backend
