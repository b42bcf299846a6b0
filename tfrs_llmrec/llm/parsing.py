"""Validators for LLM output: they return the cleaned value or raise ValueError (then retried)."""

from __future__ import annotations

import json
import re
from typing import Any, Callable, List, Optional

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def _extract_json(text: str) -> Any:
    """The JSON value in `text`, tolerating a code fence or prose around one list/object."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for opener, closer in (("[", "]"), ("{", "}")):
        start, end = stripped.find(opener), stripped.rfind(closer)
        if 0 <= start < end:
            try:
                return json.loads(stripped[start:end + 1])
            except ValueError:
                continue
    raise ValueError(f"no JSON list found in the output: {_preview(text)!r}")


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat[:limit] + ("..." if len(flat) > limit else "")


def parse_json_string_list(text: str, *, min_items: int = 1, max_items: Optional[int] = None,
                           max_chars: int = 200) -> List[str]:
    """A JSON list of non-empty strings (whitespace collapsed, case-insensitive duplicates
    dropped, first `max_items` kept). An object with exactly one list value is accepted too,
    as JSON modes often wrap the list. Fewer than `min_items` phrases, a phrase longer than
    `max_chars`, or anything that is not a list of strings raises ValueError."""
    value = _extract_json(text)
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ValueError(f"expected a JSON list of strings, got an object: {_preview(text)!r}")
        value = lists[0]
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list of strings, got {type(value).__name__}: {_preview(text)!r}")
    phrases: List[str] = []
    seen = set()
    for element in value:
        if not isinstance(element, str):
            raise ValueError(f"expected only strings in the list, got {type(element).__name__}: {element!r}")
        phrase = " ".join(element.split())
        if not phrase:
            continue
        if len(phrase) > max_chars:
            raise ValueError(f"a phrase is {len(phrase)} characters long (limit {max_chars}): {_preview(phrase)!r}")
        folded = phrase.casefold()
        if folded not in seen:
            seen.add(folded)
            phrases.append(phrase)
    if len(phrases) < min_items:
        raise ValueError(f"expected at least {min_items} non-empty phrases, got {len(phrases)}")
    return phrases[:max_items] if max_items is not None else phrases


def string_list_validator(min_items: int = 1, max_items: Optional[int] = None,
                          max_chars: int = 200) -> Callable[[str], List[str]]:
    def validate(text: str) -> List[str]:
        return parse_json_string_list(text, min_items=min_items, max_items=max_items, max_chars=max_chars)

    return validate
