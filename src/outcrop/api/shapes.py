"""Validate requests against Bedrock's own service model, as shipped in botocore.

boto3 checks only required members, types and minimums on the client side; the server must
enforce maximums, enums and patterns (as full matches, the way AWS applies them). Walking
botocore's shapes keeps every constraint exactly as the published model states it.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

import botocore.session
from botocore.model import ListShape, OperationModel, Shape, StructureShape

from outcrop.errors import ValidationError

_MAX_REPORTED = 10


@functools.cache
def operation(name: str) -> OperationModel:
    session = botocore.session.get_session()
    model: OperationModel = session.get_service_model("bedrock").operation_model(name)
    return model


def input_shape(name: str) -> StructureShape:
    shape = operation(name).input_shape
    assert shape is not None, f"{name} has no input shape"
    return shape


# Patterns of the model that backtrack exponentially in Python's `re` (a jobName of "a", sixty
# dashes and "_" would hold a worker, and the GIL, for years), each with an equivalent that runs
# in linear time. Both accept the same values within the shape's length limits (checked too).
LINEAR_EQUIVALENTS = {
    r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}": r"[a-zA-Z0-9][a-zA-Z0-9\+\-\.]*",
}


def safe_pattern(pattern: str) -> str:
    """The pattern to match with: the model's own, or its linear-time equivalent."""
    return LINEAR_EQUIVALENTS.get(pattern, pattern)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(safe_pattern(pattern), re.ASCII)


def _render(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."


class _Collector:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, value: Any, path: str, constraint: str) -> None:
        shown = "null" if value is None else f"'{_render(value)}'"
        self.errors.append(f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}")

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        count = len(self.errors)
        noun = "error" if count == 1 else "errors"
        shown = "; ".join(self.errors[:_MAX_REPORTED])
        raise ValidationError(f"{count} validation {noun} detected: {shown}")


def _check(shape: Shape, value: Any, path: str, out: _Collector) -> None:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            out.add(value, path, "Member must be an object")
            return
        present = [k for k, v in value.items() if k in shape.members and v is not None]
        if meta.get("union") and len(present) != 1:
            names = ", ".join(shape.members)
            out.add(
                None if not present else "...", path, f"Member must have exactly one of: {names}"
            )
        for name in meta.get("required", []):
            if value.get(name) is None:
                out.add(None, _join(path, name), "Member must not be null")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                _check(member, value[name], _join(path, name), out)
    elif kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            out.add(value, path, "Member must be a list")
            return
        _check_size(len(value), value, path, meta, out, "length")
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}.{i + 1}.member", out)
    elif kind == "string":
        if not isinstance(value, str):
            out.add(value, path, "Member must be a string")
            return
        _check_size(len(value), value, path, meta, out, "length")
        if "enum" in shape.metadata and value not in shape.metadata["enum"]:
            out.add(value, path, f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
        pattern = meta.get("pattern")
        if pattern is not None and _compiled(pattern).fullmatch(value) is None:
            out.add(value, path, f"Member must satisfy regular expression pattern: {pattern}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            out.add(value, path, "Member must be an integer")
            return
        if "min" in meta and value < meta["min"]:
            out.add(value, path, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            out.add(value, path, f"Member must have value less than or equal to {meta['max']}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            out.add(value, path, "Member must be a boolean")
    elif kind == "timestamp":
        if not isinstance(value, datetime):
            out.add(value, path, "Member must be a timestamp")


def _check_size(
    size: int, value: Any, path: str, meta: dict[str, Any], out: _Collector, what: str
) -> None:
    if "min" in meta and size < meta["min"]:
        out.add(value, path, f"Member must have {what} greater than or equal to {meta['min']}")
    if "max" in meta and size > meta["max"]:
        out.add(value, path, f"Member must have {what} less than or equal to {meta['max']}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validate_input(operation_name: str, params: dict[str, Any]) -> None:
    """Raise ValidationError naming every violated constraint of the operation's input shape."""
    out = _Collector()
    _check(input_shape(operation_name), params, "", out)
    out.raise_if_any()


def parse_timestamp(text: str, name: str) -> datetime:
    """Parse an ISO-8601 query timestamp leniently: seconds, millis or micros; Z or an offset."""
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        try:
            parsed = datetime.fromtimestamp(float(text), UTC)
        except (ValueError, OverflowError, OSError):
            raise ValidationError(
                f"1 validation error detected: Value '{_render(text)}' at '{name}' failed to "
                "satisfy constraint: Member must be an ISO-8601 timestamp"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
        raise ValidationError(
            f"1 validation error detected: Value '{_render(text)}' at '{name}' failed to "
            "satisfy constraint: Member must be a timestamp between years 1 and 9999 (UTC)"
        ) from None


def querystring_params(operation_name: str, query: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn a raw query string into typed members of the operation's input shape."""
    members = input_shape(operation_name).members
    by_wire_name = {m.serialization.get("name", n): (n, m) for n, m in members.items()}
    params: dict[str, Any] = {}
    for key, raw in query:
        if key not in by_wire_name:
            continue  # unknown query parameters are ignored, as AWS does
        name, member = by_wire_name[key]
        if name in params:
            raise ValidationError(f"Query parameter '{key}' was given more than once.")
        if member.type_name == "timestamp":
            params[name] = parse_timestamp(raw, name)
        elif member.type_name in ("integer", "long"):
            try:
                params[name] = int(raw)
            except ValueError:
                raise ValidationError(
                    f"1 validation error detected: Value '{_render(raw)}' at '{name}' failed to "
                    "satisfy constraint: Member must be an integer"
                ) from None
        else:
            params[name] = raw
    return params
