"""EventBridge event patterns: validate a rule's pattern once, then test events against it."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# A JSON scalar as it appears in an event or a pattern.
Leaf = str | int | float | bool | None

_LOWER_OPS = (">", ">=")
_UPPER_OPS = ("<", "<=")
_NUMERIC_OPS = ("=", *_LOWER_OPS, *_UPPER_OPS)
_OPERATORS = (
    "prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but", "numeric", "exists",
    "cidr",
)  # fmt: skip
_LISTABLE = ("equals-ignore-case", "wildcard")


class PatternError(ValueError):
    """The event pattern is malformed (EventBridge answers InvalidEventPatternException)."""


def _is_number(value: object) -> bool:
    # bool is an int in Python but a distinct type in JSON: true must never equal 1.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(expected: Leaf, actual: Leaf) -> bool:
    if _is_number(expected) and _is_number(actual):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


class _Matcher:
    """One entry of a leaf array; the leaf matches when any entry matches."""

    def test(self, value: Leaf) -> bool:
        raise NotImplementedError

    def matches(self, values: Sequence[Leaf]) -> bool:
        # `values` is empty when the field is absent; an array in the event matches if any
        # element does, as EventBridge flattens arrays into one value per element.
        return any(self.test(value) for value in values)


@dataclass(frozen=True)
class _Exact(_Matcher):
    value: Leaf

    def test(self, value: Leaf) -> bool:
        return _same(self.value, value)


@dataclass(frozen=True)
class _Prefix(_Matcher):
    text: str
    ignore_case: bool = False

    def test(self, value: Leaf) -> bool:
        if not isinstance(value, str):
            return False
        if self.ignore_case:
            return value.lower().startswith(self.text.lower())
        return value.startswith(self.text)


@dataclass(frozen=True)
class _Suffix(_Matcher):
    text: str
    ignore_case: bool = False

    def test(self, value: Leaf) -> bool:
        if not isinstance(value, str):
            return False
        if self.ignore_case:
            return value.lower().endswith(self.text.lower())
        return value.endswith(self.text)


@dataclass(frozen=True)
class _EqualsIgnoreCase(_Matcher):
    text: str

    def test(self, value: Leaf) -> bool:
        return isinstance(value, str) and value.lower() == self.text.lower()


@dataclass(frozen=True)
class _Wildcard(_Matcher):
    regex: re.Pattern[str]

    def test(self, value: Leaf) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


@dataclass(frozen=True)
class _Numeric(_Matcher):
    lower: tuple[float, bool] | None  # (bound, inclusive)
    upper: tuple[float, bool] | None
    equal: float | None = None

    def test(self, value: Leaf) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.equal is not None:
            return value == self.equal
        if self.lower is not None:
            bound, inclusive = self.lower
            if value < bound or (value == bound and not inclusive):
                return False
        if self.upper is not None:
            bound, inclusive = self.upper
            if value > bound or (value == bound and not inclusive):
                return False
        return True


@dataclass(frozen=True)
class _Cidr(_Matcher):
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def test(self, value: Leaf) -> bool:
        if not isinstance(value, str):
            return False
        try:
            return ipaddress.ip_address(value) in self.network
        except ValueError:
            return False


@dataclass(frozen=True)
class _Exists(_Matcher):
    present: bool

    def matches(self, values: Sequence[Leaf]) -> bool:
        return bool(values) == self.present


@dataclass(frozen=True)
class _AnythingBut(_Matcher):
    excluded: tuple[_Matcher, ...]

    def test(self, value: Leaf) -> bool:
        # Reached only for values that are present: EventBridge's anything-but never matches
        # a missing field (pair it with {"exists": false} for that).
        return not any(matcher.test(value) for matcher in self.excluded)


@dataclass(frozen=True)
class _Object:
    """An object in the pattern: every field must match (AND), then every `$or` alternative set."""

    leaves: tuple[tuple[str, tuple[_Matcher, ...]], ...]
    children: tuple[tuple[str, _Object], ...]
    alternatives: tuple[_Object, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for key, matchers in self.leaves:
            values = list(_leaf_values(obj[key])) if key in obj else []
            if not any(matcher.matches(values) for matcher in matchers):
                return False
        for key, child in self.children:
            candidates = list(_objects(obj[key])) if key in obj else []
            # A missing or non-object field still gets a look, as an empty object, so that
            # {"exists": false} below it can match.
            if not any(child.matches(candidate) for candidate in candidates or [{}]):
                return False
        return not self.alternatives or any(alt.matches(obj) for alt in self.alternatives)


def _leaf_values(value: Any) -> Iterator[Leaf]:
    # Objects are not leaves: a pattern leaf that lands on an object sees no value there,
    # which is why {"exists": false} matches it (as the AWS event-ruler documents).
    if isinstance(value, list):
        for item in value:
            yield from _leaf_values(item)
    elif not isinstance(value, Mapping):
        yield value


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        for item in value:
            yield from _objects(item)
    elif isinstance(value, Mapping):
        yield value


@dataclass(frozen=True)
class EventPattern:
    """A validated EventBridge event pattern."""

    _root: _Object

    def matches(self, event: Mapping[str, Any]) -> bool:
        return self._root.matches(event)


def compile_pattern(pattern: object) -> EventPattern:
    """Validate `pattern` (a dict, or its JSON text as PutRule's EventPattern carries it)."""
    if isinstance(pattern, str | bytes):
        try:
            pattern = orjson.loads(pattern)
        except orjson.JSONDecodeError as exc:
            raise PatternError(f"event pattern is not valid JSON: {exc}") from None
    return EventPattern(_compile_object(pattern, "event pattern"))


def matches(pattern: object, event: Mapping[str, Any]) -> bool:
    """Whether `event` matches `pattern`; compile once with `compile_pattern` to test many."""
    return compile_pattern(pattern).matches(event)


def _compile_object(pattern: object, where: str) -> _Object:
    if not isinstance(pattern, Mapping):
        raise PatternError(f"{where} must be a JSON object, got {_kind(pattern)}")
    if not pattern:
        raise PatternError(f"{where} must not be empty")
    leaves: list[tuple[str, tuple[_Matcher, ...]]] = []
    children: list[tuple[str, _Object]] = []
    alternatives: tuple[_Object, ...] = ()
    for key, value in pattern.items():
        if not isinstance(key, str):
            raise PatternError(f"{where} has a non-string key {key!r}")
        path = key if where == "event pattern" else f"{where}.{key}"
        if key == "$or":
            alternatives = _compile_or(value, path)
        elif isinstance(value, Mapping):
            children.append((key, _compile_object(value, path)))
        elif isinstance(value, list):
            leaves.append((key, _compile_leaf(value, path)))
        else:
            raise PatternError(
                f"{path} must be an array of values or an object, got {_kind(value)}"
            )
    return _Object(tuple(leaves), tuple(children), alternatives)


def _compile_or(value: object, where: str) -> tuple[_Object, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise PatternError(f"{where} must be an array of at least two objects")
    return tuple(_compile_object(alt, f"{where}[{i}]") for i, alt in enumerate(value))


def _compile_leaf(values: list[Any], where: str) -> tuple[_Matcher, ...]:
    if not values:
        raise PatternError(f"{where} must not be an empty array")
    matchers: list[_Matcher] = []
    for i, value in enumerate(values):
        item = f"{where}[{i}]"
        if isinstance(value, Mapping):
            matchers.append(_compile_operator(value, item))
        elif _is_leaf(value):
            matchers.append(_Exact(value))
        else:
            raise PatternError(f"{item} must be a string, number, boolean, null or an operator")
    return tuple(matchers)


def _compile_operator(spec: Mapping[str, Any], where: str) -> _Matcher:
    if len(spec) != 1:
        raise PatternError(f"{where} must hold exactly one operator, got {sorted(spec)}")
    ((name, arg),) = spec.items()
    where = f"{where}.{name}"
    if name in ("prefix", "suffix"):
        if isinstance(arg, Mapping):
            text = _string(_only(arg, ("equals-ignore-case",), where), where)
            return _Prefix(text, True) if name == "prefix" else _Suffix(text, True)
        text = _string(arg, where)
        return _Prefix(text) if name == "prefix" else _Suffix(text)
    if name == "equals-ignore-case":
        return _EqualsIgnoreCase(_string(arg, where))
    if name == "wildcard":
        return _compile_wildcard(_string(arg, where), where)
    if name == "anything-but":
        return _compile_anything_but(arg, where)
    if name == "numeric":
        return _compile_numeric(arg, where)
    if name == "exists":
        if not isinstance(arg, bool):
            raise PatternError(f"{where} must be true or false")
        return _Exists(arg)
    if name == "cidr":
        try:
            return _Cidr(ipaddress.ip_network(_string(arg, where), strict=False))
        except ValueError:
            raise PatternError(f"{where} must be an IP address range, got {arg!r}") from None
    raise PatternError(f"{where}: unknown operator; expected one of {', '.join(_OPERATORS)}")


def _compile_anything_but(arg: object, where: str) -> _AnythingBut:
    if isinstance(arg, Mapping):
        name = next(iter(arg), "")
        if len(arg) != 1 or name not in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
            raise PatternError(
                f"{where} takes a value, a list of values, or one of prefix, suffix, "
                "equals-ignore-case, wildcard"
            )
        # equals-ignore-case and wildcard also take a list here: exclude any of them.
        texts = arg[name] if isinstance(arg[name], list) and name in _LISTABLE else [arg[name]]
        if not texts:
            raise PatternError(f"{where}.{name} must not be an empty array")
        return _AnythingBut(tuple(_compile_operator({name: text}, where) for text in texts))
    items: list[Any] = arg if isinstance(arg, list) else [arg]
    if not items:
        raise PatternError(f"{where} must not be an empty array")
    if not (all(isinstance(v, str) for v in items) or all(_is_number(v) for v in items)):
        raise PatternError(f"{where} takes strings only or numbers only, got {arg!r}")
    return _AnythingBut(tuple(_Exact(v) for v in items))


def _compile_numeric(arg: object, where: str) -> _Numeric:
    if not isinstance(arg, list) or not arg or len(arg) % 2 or len(arg) > 4:
        raise PatternError(f"{where} must be [op, number] or [op, number, op, number]")
    lower: tuple[float, bool] | None = None
    upper: tuple[float, bool] | None = None
    for op, bound in zip(arg[::2], arg[1::2], strict=True):
        if op not in _NUMERIC_OPS:
            raise PatternError(f"{where}: unknown operator {op!r}; expected one of {_NUMERIC_OPS}")
        if not _is_number(bound) or not math.isfinite(bound):
            raise PatternError(f"{where}: {op!r} needs a finite number, got {bound!r}")
        if op == "=":
            if len(arg) != 2:
                raise PatternError(f"{where}: '=' cannot be combined with other operators")
            return _Numeric(None, None, bound)
        if op in _LOWER_OPS:
            if lower is not None:
                raise PatternError(f"{where} has two lower bounds")
            lower = (bound, op == ">=")
        else:
            if upper is not None:
                raise PatternError(f"{where} has two upper bounds")
            upper = (bound, op == "<=")
    if lower is not None and upper is not None and lower[0] >= upper[0]:
        raise PatternError(f"{where}: the lower bound must be below the upper bound")
    return _Numeric(lower, upper)


def _compile_wildcard(text: str, where: str) -> _Wildcard:
    parts: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in ("*", "\\"):
                raise PatternError(f"{where}: only '*' and '\\' may be escaped, in {text!r}")
            parts.append(re.escape(escaped))
        elif char == "*":
            if parts and parts[-1] == ".*":
                raise PatternError(f"{where}: consecutive '*' are not allowed in {text!r}")
            parts.append(".*")
        else:
            parts.append(re.escape(char))
    return _Wildcard(re.compile("".join(parts), re.DOTALL))


def _only(arg: Mapping[str, Any], names: tuple[str, ...], where: str) -> Any:
    if len(arg) != 1 or next(iter(arg)) not in names:
        raise PatternError(f"{where} takes a string or {{{', '.join(map(repr, names))}: ...}}")
    return next(iter(arg.values()))


def _string(arg: object, where: str) -> str:
    if not isinstance(arg, str):
        raise PatternError(f"{where} must be a string, got {_kind(arg)}")
    return arg


def _is_leaf(value: object) -> bool:
    return value is None or isinstance(value, str | bool | int | float)


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
