"""Versioned prompt templates: `tfrs_llmrec/llm/prompts/<name>.v<version>.txt`.

A template file holds an optional `[system]` section and a `[user]` section (a file without
section markers is one user message). Fields are named, `{title}`, as in `str.format`; literal
braces are doubled. Only plain names are allowed: no positional fields, attribute or index
access, conversions or format specs. The name and version of a template are part of every
cache key, so a changed template gets a new version number rather than an edit in place.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, FrozenSet, List, Mapping, Optional, Tuple, Union

ITEM_MOTIVATION = "item_motivation"
USER_INTERESTS = "user_interests"

_NAME = re.compile(r"^[a-z0-9_]+$")
_SECTION = re.compile(r"^\[(system|user)\]\s*$")
_FILE = re.compile(r"^([a-z0-9_]+)\.v([0-9]+)\.txt$")


class PromptError(ValueError):
    """A template cannot be found, parsed or rendered; the message names the template."""


Part = Tuple[str, Optional[str]]  # (literal text, field name or None)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    source: str
    system: Optional[Tuple[Part, ...]]
    user: Tuple[Part, ...]
    fields: FrozenSet[str]

    @property
    def identity(self) -> str:
        """`<name>.v<version>`, as used in cache keys and logs."""
        return f"{self.name}.v{self.version}"

    def render(self, **values: object) -> List[Dict[str, str]]:
        """Chat messages with every field filled; extra values are ignored."""
        missing = sorted(self.fields - values.keys())
        if missing:
            given = ", ".join(sorted(values)) or "none"
            raise PromptError(
                f"prompt {self.identity} ({self.source}) needs field {{{missing[0]}}}, which was not given"
                + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
                + f"; given fields: {given}")
        messages = []
        if self.system is not None:
            messages.append({"role": "system", "content": _fill(self.system, values)})
        messages.append({"role": "user", "content": _fill(self.user, values)})
        return messages


def _fill(parts: Tuple[Part, ...], values: Mapping[str, object]) -> str:
    return "".join(literal + ("" if name is None else str(values[name])) for literal, name in parts)


def parse_template(text: str, name: str, version: int, source: str = "<string>") -> PromptTemplate:
    """Splits sections and checks every field; errors name the template."""
    identity = f"{name}.v{version}"
    sections: Dict[str, List[str]] = {}
    current: Optional[str] = None
    preamble: List[str] = []
    for line in text.splitlines():
        match = _SECTION.match(line)
        if match:
            current = match.group(1)
            if current in sections:
                raise PromptError(f"prompt {identity} ({source}) has two [{current}] sections")
            sections[current] = []
        elif current is None:
            preamble.append(line)
        else:
            sections[current].append(line)
    if not sections:
        sections["user"] = preamble
    elif any(line.strip() for line in preamble):
        raise PromptError(f"prompt {identity} ({source}) has text before its first [system]/[user] marker")
    if "user" not in sections:
        raise PromptError(f"prompt {identity} ({source}) has no [user] section")
    fields = set()
    parsed: Dict[str, Tuple[Part, ...]] = {}
    for section, lines in sections.items():
        body = "\n".join(lines).strip("\n")
        if not body.strip():
            raise PromptError(f"prompt {identity} ({source}) has an empty [{section}] section")
        parts = []
        try:
            pieces = list(string.Formatter().parse(body))
        except ValueError as exc:
            raise PromptError(f"prompt {identity} ({source}), [{section}]: {exc} "
                              "(write literal braces as {{ and }})") from None
        for literal, field_name, spec, conversion in pieces:
            if field_name is None:
                parts.append((literal, None))
                continue
            if not field_name.isidentifier() or spec or conversion:
                shown = "{" + field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                raise PromptError(f"prompt {identity} ({source}), [{section}]: field {shown} is not a plain "
                                  "name; use {name} (literal braces are written {{ and }})")
            fields.add(field_name)
            parts.append((literal, field_name))
        parsed[section] = tuple(parts)
    return PromptTemplate(name=name, version=int(version), source=source, system=parsed.get("system"),
                          user=parsed["user"], fields=frozenset(fields))


def _template_file(name: str, version: int):
    return resources.files("tfrs_llmrec.llm") / "prompts" / f"{name}.v{version}.txt"


def load_prompt(name: str, version: int = 1,
                directory: Optional[Union[str, os.PathLike]] = None) -> PromptTemplate:
    """The template `<name>.v<version>.txt` from the package (or from `directory`)."""
    if not _NAME.match(name or ""):
        raise PromptError(f"prompt name {name!r} must be lower-case letters, digits and underscores")
    if int(version) < 1:
        raise PromptError(f"prompt {name}: version must be >= 1, got {version}")
    if directory is not None:
        path = Path(directory) / f"{name}.v{int(version)}.txt"
        source = str(path)
        if not path.is_file():
            raise PromptError(_not_found(name, version, source, _versions_in(Path(directory), name)))
        text = path.read_text(encoding="utf-8")
    else:
        resource = _template_file(name, int(version))
        source = f"tfrs_llmrec/llm/prompts/{name}.v{int(version)}.txt"
        if not resource.is_file():
            raise PromptError(_not_found(name, version, source, available_prompts().get(name, [])))
        text = resource.read_text(encoding="utf-8")
    return parse_template(text, name, int(version), source)


def _not_found(name: str, version: int, source: str, versions: List[int]) -> str:
    known = ", ".join(f"v{v}" for v in versions) if versions else "none"
    return f"prompt template {name}.v{version} not found at {source} (versions of {name!r} available: {known})"


def _versions_in(directory: Path, name: str) -> List[int]:
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            match = _FILE.match(path.name)
            if match and match.group(1) == name:
                found.append(int(match.group(2)))
    return sorted(found)


def available_prompts() -> Dict[str, List[int]]:
    """Packaged templates: name -> sorted versions."""
    found: Dict[str, List[int]] = {}
    folder = resources.files("tfrs_llmrec.llm") / "prompts"
    if folder.is_dir():
        for entry in folder.iterdir():
            match = _FILE.match(entry.name)
            if match:
                found.setdefault(match.group(1), []).append(int(match.group(2)))
    return {name: sorted(versions) for name, versions in sorted(found.items())}
