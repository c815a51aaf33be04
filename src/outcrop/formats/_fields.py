"""Field checkers shared by the body families; every failure is a FormatError naming its path."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from typing import Any, Literal, NoReturn

from outcrop.formats.base import FormatError

Role = Literal["user", "assistant"]


def fail(path: str, message: str) -> NoReturn:
    raise FormatError(f"{path}: {message}")


def at(prefix: str, key: str | int) -> str:
    """The dotted path of `key` inside the object at `prefix` ("" is the body itself)."""
    return f"{prefix}.{key}" if prefix else str(key)


def body_object(body: object) -> dict[str, Any]:
    # parse is typed for dicts, but a record's modelInput is whatever JSON the user wrote.
    if not isinstance(body, dict):
        fail("modelInput", "must be a JSON object")
    return body


def opt_object(obj: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    """An optional nested object; absent or null reads as empty."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(at(prefix, key), "must be an object")
    return value


def req_str(obj: dict[str, Any], key: str, prefix: str = "") -> str:
    value = obj.get(key)
    if value is None:
        fail(at(prefix, key), "field required")
    if not isinstance(value, str):
        fail(at(prefix, key), "must be a string")
    return value


def req_list(obj: dict[str, Any], key: str, prefix: str = "") -> list[Any]:
    """A required, non-empty list."""
    value = obj.get(key)
    if type(value) is list and value:  # the common case first: these run for every record
        return value
    if value is None:
        fail(at(prefix, key), "field required")
    if not isinstance(value, list):
        fail(at(prefix, key), "must be a list")
    if not value:
        fail(at(prefix, key), "must not be empty")
    return value


def opt_int(obj: dict[str, Any], key: str, prefix: str = "", *, minimum: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python but never a token count in JSON.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        fail(at(prefix, key), f"must be an integer >= {minimum}")
    return value


def req_int(obj: dict[str, Any], key: str, prefix: str = "", *, minimum: int) -> int:
    value = obj.get(key)
    if type(value) is int and value >= minimum:  # the common case, without opt_int's call
        return value
    value = opt_int(obj, key, prefix, minimum=minimum)
    if value is None:
        fail(at(prefix, key), "field required")
    return value


def opt_float(
    obj: dict[str, Any], key: str, prefix: str = "", *, low: float, high: float
) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    # The negated range test also rejects NaN.
    if not isinstance(value, int | float) or isinstance(value, bool) or not (low <= value <= high):
        fail(at(prefix, key), f"must be a number between {low:g} and {high:g}")
    return float(value)


def opt_bool(obj: dict[str, Any], key: str, prefix: str = "") -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        fail(at(prefix, key), "must be a boolean")
    return value


def stop_list(
    obj: dict[str, Any], key: str, prefix: str = "", *, allow_str: bool = False
) -> tuple[str, ...]:
    """Stop sequences: a list of non-empty strings (or one string where the family allows it)."""
    value = obj.get(key)
    path = at(prefix, key)
    if value is None:
        return ()
    if allow_str and isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        fail(path, "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            fail(at(path, i), "must be a string")
        if not item:
            # An empty stop sequence would match at offset 0 and cut every answer to nothing.
            fail(at(path, i), "must not be empty")
    return tuple(value)


def typed_text(value: object, path: str, *, what: str = "blocks") -> str:
    """Content that is a string or a list of {"type": "text", "text": ...}; texts join with "\n"."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        fail(path, f"must be a string or a list of text {what}")
    texts: list[str] = []
    for i, block in enumerate(value):
        block_path = at(path, i)
        if not isinstance(block, dict):
            fail(block_path, "must be an object")
        kind = block.get("type")
        if kind != "text":
            if not isinstance(kind, str):
                fail(at(block_path, "type"), "field required (a string)")
            fail(at(block_path, "type"), f"only text {what} are supported, not '{kind}'")
        texts.append(req_str(block, "text", block_path))
    return "\n".join(texts)


def alternating(roles: Iterable[tuple[str, Role]]) -> None:
    """Turns start with the user and alternate; each role comes with the path it was read from."""
    expected: Role = "user"
    for path, role in roles:
        if role != expected:
            fail(path, f"must be '{expected}' (turns start with 'user' and alternate)")
        expected = "assistant" if role == "user" else "user"


def role_of(message: dict[str, Any], path: str) -> Role:
    role = message.get("role")
    if role == "user":
        return "user"
    if role == "assistant":
        return "assistant"
    if role is None:
        fail(at(path, "role"), "field required")
    fail(at(path, "role"), "must be 'user' or 'assistant'")


def message_object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(path, "must be an object")
    return value


_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count()


def response_id() -> str:
    """A unique response id (24 hex digits): a random per-process prefix and a counter.

    One random draw per process, not per record: ids need to be unique, not secret, and a
    system call per record was a measurable share of the record path.
    """
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"
