"""The model catalog: which backend and body format serve a modelId."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class CatalogFileError(ValueError):
    """The catalog file is unreadable or an entry is malformed."""


@dataclass(frozen=True)
class CatalogEntry:
    model_id: str
    backend: str
    format: str
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def format_for(self, invocation_type: str) -> str:
        """Converse jobs use the Converse body for every model, as in Bedrock."""
        return "converse" if invocation_type == "Converse" else self.format


BUILTIN_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        model_id="outcrop.echo-v1",
        backend="echo",
        format="anthropic-messages",
        description="Answers with the last user turn; for tests and demos.",
    ),
    CatalogEntry(
        model_id="sentence-transformers.all-minilm-l6-v2",
        backend="sentence-transformers",
        format="titan-embed",
        options={"model": "all-minilm-l6-v2"},
        description="all-MiniLM-L6-v2 embeddings (384 dimensions), offline, on the CPU.",
    ),
)


def _entry(raw: Any, where: str) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise CatalogFileError(f"{where}: each [[models]] entry must be a table")
    missing = [
        k
        for k in ("model_id", "backend", "format")
        if not isinstance(raw.get(k), str) or not raw.get(k)
    ]
    if missing:
        raise CatalogFileError(f"{where}: missing or empty {', '.join(missing)}")
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise CatalogFileError(f"{where}: options must be a table")
    unknown = set(raw) - {"model_id", "backend", "format", "options", "description"}
    if unknown:
        raise CatalogFileError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    return CatalogEntry(
        model_id=raw["model_id"],
        backend=raw["backend"],
        format=raw["format"],
        options=dict(options),
        description=str(raw.get("description", "")),
    )


def load_catalog_file(path: Path) -> list[CatalogEntry]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogFileError(f"cannot read catalog {path}: {exc}") from None
    models = data.get("models", [])
    if not isinstance(models, list):
        raise CatalogFileError(f"{path}: 'models' must be an array of tables ([[models]])")
    return [_entry(raw, f"{path} models[{i}]") for i, raw in enumerate(models)]


class Catalog:
    """Built-in entries plus the file's; a file entry with a built-in's model_id replaces it."""

    def __init__(self, entries: list[CatalogEntry]) -> None:
        self._entries: dict[str, CatalogEntry] = {}
        for entry in entries:
            self._entries[entry.model_id] = entry

    @classmethod
    def load(cls, path: Path | None) -> Catalog:
        entries = list(BUILTIN_ENTRIES)
        if path is not None:
            entries += load_catalog_file(path)
        return cls(entries)

    def get(self, model_id: str) -> CatalogEntry | None:
        entry = self._entries.get(model_id)
        if entry is None and model_id.startswith("arn:"):
            # A foundation-model ARN names the same model as its bare id.
            entry = self._entries.get(model_id.rsplit("/", 1)[-1])
        return entry

    def remove(self, model_id: str) -> None:
        self._entries.pop(model_id, None)

    def entries(self) -> list[CatalogEntry]:
        return list(self._entries.values())
