"""The body families by name, as catalog entries and model ids refer to them."""

from __future__ import annotations

from outcrop.formats.anthropic import AnthropicMessages
from outcrop.formats.base import BodyFormat
from outcrop.formats.converse import Converse
from outcrop.formats.llama import Llama
from outcrop.formats.mistral import Mistral
from outcrop.formats.nova import Nova
from outcrop.formats.openai_chat import OpenAIChat
from outcrop.formats.titan_embed import TitanEmbed
from outcrop.formats.titan_text import TitanText


class UnknownFormat(ValueError):
    """No body family has this name."""


# Formats are stateless, so one instance of each serves every record.
FORMATS: dict[str, BodyFormat] = {
    fmt.name: fmt
    for fmt in (
        AnthropicMessages(),
        Converse(),
        Nova(),
        Llama(),
        Mistral(),
        OpenAIChat(),
        TitanText(),
        TitanEmbed(),
    )
}

FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)


def get_format(name: str) -> BodyFormat:
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(FORMAT_NAMES)
        raise UnknownFormat(f"unknown body format '{name}' (known: {known})") from None
