"""Botocore's patterns (Java-flavoured, applied by AWS as full matches) as ECMA 262 patterns."""

from __future__ import annotations

# Whitespace as the server's patterns see it: they are compiled with re.ASCII.
_ASCII_SPACE = r"\t\n\v\f\r "


def _end_of_group(pattern: str, start: int) -> int:
    """Index of the ')' closing the group that contains `start`, or len(pattern) at top level."""
    depth = 0
    i = start
    in_class = False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return len(pattern)


def _dollar_is_redundant(pattern: str, index: int) -> bool:
    """Whether the `$` at `index` can only sit at the end of a full match anyway.

    True when nothing but closing groups (not quantified) and the rest of alternatives follow it,
    so wrapping the whole pattern in `^(?:...)$` already says the same.
    """
    i = index + 1
    while i < len(pattern):
        if pattern[i] == ")":
            i += 1
            if i < len(pattern) and pattern[i] in "?*+{":
                return False
        elif pattern[i] == "|":
            i = _end_of_group(pattern, i + 1)
        else:
            return False
    return True


def ecma_pattern(pattern: str) -> str | None:
    """A botocore pattern (applied by AWS as a full match) as an anchored ECMA 262 pattern.

    `\\s` and `\\S` become the ASCII classes the server uses, a hyphen that could be read as a
    range becomes `\\-`, and a `$` that only restates the end of the match is dropped. Returns
    None for a pattern that cannot be carried over faithfully (anchors in the middle, `\\S`
    inside a class); the server still enforces it.
    """
    out: list[str] = []
    i = 0
    in_class = False
    class_atoms = 0  # atoms seen in the current class, to tell a range from a literal hyphen
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escape = pattern[i : i + 2]
            i += 2
            if escape == r"\s":
                out.append(_ASCII_SPACE if in_class else f"[{_ASCII_SPACE}]")
            elif escape == r"\S":
                if in_class:
                    return None
                out.append(f"[^{_ASCII_SPACE}]")
            else:
                out.append(escape)
            class_atoms += 1
            continue
        i += 1
        if in_class:
            if char == "]":
                in_class = False
                out.append(char)
            elif char == "-":
                is_range = class_atoms > 0 and i < len(pattern) and pattern[i] != "]"
                out.append("-" if is_range else r"\-")
                if is_range:  # the range's upper end is part of the range, not a new atom
                    out.append(pattern[i : i + 2] if pattern[i] == "\\" else pattern[i])
                    i += 2 if pattern[i] == "\\" else 1
                    class_atoms = 0
            else:
                out.append(char)
                class_atoms += 1
            continue
        if char == "[":
            in_class = True
            class_atoms = 0
            out.append(char)
            if pattern[i : i + 1] == "^":
                out.append("^")
                i += 1
        elif char == "^":
            return None
        elif char == "$":
            if not _dollar_is_redundant(pattern, i - 1):
                return None
        else:
            out.append(char)
    return f"^(?:{''.join(out)})$"
