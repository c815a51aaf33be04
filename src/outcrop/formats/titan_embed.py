"""titan-embed: Titan Text Embeddings v2's body, used for any text-embedding model.

Ignored fields: any unknown key. `dimensions` only has to be a positive integer here: which sizes
a model supports is its backend's business (a per-record 400 from there). `normalize` defaults to
true. `embeddingTypes` may only ask for "float"; "binary" is rejected.
"""

from __future__ import annotations

from typing import Any

from outcrop.formats import _fields as f
from outcrop.formats.base import InferenceRequest, InferenceResponse


class TitanEmbed:
    name = "titan-embed"

    def parse(self, body: dict[str, Any]) -> InferenceRequest:
        body = f.body_object(body)
        text = f.req_str(body, "inputText")
        if not text:
            f.fail("inputText", "must not be empty")
        types = body.get("embeddingTypes")
        if types is not None:
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                f.fail("embeddingTypes", "must be a list of strings")
            for i, kind in enumerate(types):
                if kind == "binary":
                    f.fail(f"embeddingTypes.{i}", "'binary' embeddings are not supported")
                if kind != "float":
                    f.fail(f"embeddingTypes.{i}", f"must be 'float', not '{kind}'")
        normalize = f.opt_bool(body, "normalize")
        return InferenceRequest(
            kind="embedding",
            input_text=text,
            dimensions=f.opt_int(body, "dimensions", minimum=1),
            normalize=True if normalize is None else normalize,
        )

    def render(
        self, request: InferenceRequest, response: InferenceResponse, model_id: str
    ) -> dict[str, Any]:
        vector = list(response.embedding or ())
        return {
            "embedding": vector,
            "inputTextTokenCount": response.input_tokens,
            "embeddingsByType": {"float": vector},
        }
