"""Loads YAML experiment configs into typed dataclasses.

A config file may name base files under `include:` (a path or a list, relative to the
including file); bases are merged first, in order, then the file itself, then `--set KEY=VALUE`
overrides from the command line. Mappings merge key by key; any other value replaces the base
value whole. Every leaf remembers which file (or `--set`) gave it, so an error names that
source and the dotted key path: `configs/x.yaml: model.tower.dim: expected int, got 'big'`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Mapping, Tuple, Type, TypeVar, Union

import yaml

INCLUDE_KEY = "include"
CLI_SOURCE = "--set"

T = TypeVar("T")
KeyPath = Tuple[Union[str, int], ...]


class ConfigError(ValueError):
    """A config problem, located by source (file or `--set`) and dotted key path."""

    def __init__(self, source: str, key_path: str, message: str):
        self.source = source
        self.key_path = key_path
        self.message = message
        location = f"{source}: {key_path}" if key_path else source
        super().__init__(f"{location}: {message}")


def format_key_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class _Sourced:
    """A merged raw mapping plus the source that set each key path."""

    def __init__(self) -> None:
        self.data: Dict[str, Any] = {}
        self.sources: Dict[KeyPath, str] = {}

    def merge(self, raw: Mapping[str, Any], source: str) -> None:
        self._merge_into(self.data, raw, (), source)

    def _merge_into(self, target: Dict[str, Any], raw: Mapping[str, Any], prefix: KeyPath,
                    source: str) -> None:
        for key, value in raw.items():
            path = prefix + (key,)
            if isinstance(value, Mapping) and isinstance(target.get(key), dict):
                self.sources.setdefault(path, source)
                self._merge_into(target[key], value, path, source)
            else:
                target[key] = _plain_copy(value)
                self._forget_below(path)
                self._record(path, value, source)

    def _forget_below(self, path: KeyPath) -> None:
        for known in [p for p in self.sources if p[: len(path)] == path]:
            del self.sources[known]

    def _record(self, path: KeyPath, value: Any, source: str) -> None:
        self.sources[path] = source
        if isinstance(value, Mapping):
            for key, child in value.items():
                self._record(path + (key,), child, source)
        elif isinstance(value, list):
            for index, child in enumerate(value):
                self._record(path + (index,), child, source)

    def source_of(self, path: KeyPath) -> str:
        while path and path not in self.sources:
            path = path[:-1]
        return self.sources.get(path, "<defaults>")


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain_copy(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_plain_copy(child) for child in value]
    return value


def _read_yaml(path: Path, included_from: str | None) -> Dict[str, Any]:
    if not path.is_file():
        where = f" (included from {included_from})" if included_from else ""
        raise ConfigError(str(path), "", f"config file not found{where}")
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), "", f"invalid YAML{line}: {getattr(error, 'problem', error)}")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", f"expected a mapping at the top level, got {type(raw).__name__}")
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(str(path), repr(key), "keys must be strings")
    return raw


def _load_file_into(merged: _Sourced, path: Path, stack: List[Path], included_from: str | None) -> None:
    resolved = path.resolve()
    if resolved in stack:
        cycle = " -> ".join(str(p) for p in stack + [resolved])
        raise ConfigError(str(path), INCLUDE_KEY, f"include cycle: {cycle}")
    raw = _read_yaml(path, included_from)
    includes = raw.pop(INCLUDE_KEY, [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
        raise ConfigError(str(path), INCLUDE_KEY, "expected a path or a list of paths")
    for include in includes:
        _load_file_into(merged, path.parent / include, stack + [resolved], str(path))
    merged.merge(raw, str(path))


class _ConfigYamlLoader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where a float needs a dot: `1e-8` would be the string '1e-8' and be
    refused by a float key. Configs read it as the number everyone writing it means (YAML 1.2)."""


_ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_yaml(text: str) -> Any:
    """`text` as YAML, with exponent floats such as `1e-8` read as floats."""
    return yaml.load(text, Loader=_ConfigYamlLoader)


def parse_override(text: str) -> Tuple[KeyPath, Any]:
    """Parses `a.b.c=VALUE`; VALUE is read as YAML, so `3`, `true`, `[10, 20]` keep their types."""
    key, separator, value_text = text.partition("=")
    key = key.strip()
    if not separator or not key or any(not part for part in key.split(".")):
        raise ConfigError(CLI_SOURCE, text, "expected KEY.PATH=VALUE")
    try:
        value = read_yaml(value_text) if value_text.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(CLI_SOURCE, key, f"value is not valid YAML: {error}")
    return tuple(key.split(".")), value


def _nest(path: KeyPath, value: Any) -> Dict[str, Any]:
    nested: Any = value
    for part in reversed(path):
        nested = {part: nested}
    return nested


def load_config(path: Union[str, Path], cls: Type[T], overrides: Iterable[str] = ()) -> T:
    """Reads `path` (with its includes), applies `overrides`, and builds a validated `cls`."""
    merged = _Sourced()
    _load_file_into(merged, Path(path), [], None)
    for override in overrides:
        key_path, value = parse_override(override)
        merged.merge(_nest(key_path, value), CLI_SOURCE)
    return _convert(cls, merged.data, merged, ())


def from_dict(cls: Type[T], data: Mapping[str, Any], source: str = "<dict>") -> T:
    merged = _Sourced()
    merged.merge(data, source)
    return _convert(cls, merged.data, merged, ())


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__}"
    return f"{value!r} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(tp))
    if origin in (list, List):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (dict, Dict):
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, merged: _Sourced, path: KeyPath) -> Any:
    def fail(message: str) -> ConfigError:
        return ConfigError(merged.source_of(path), format_key_path(path), message)

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise fail(f"expected a mapping, got {_describe(value)}")
        return _convert_dataclass(tp, value, merged, path)
    if origin in (Union, types.UnionType):
        arguments = typing.get_args(tp)
        if value is None and type(None) in arguments:
            return None
        for argument in arguments:
            if argument is type(None):
                continue
            try:
                return _convert(argument, value, merged, path)
            except ConfigError:
                continue
        raise fail(f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"expected {_type_name(tp)}, got {_describe(value)}{hint}")
        return value
    if origin in (list, List):
        if not isinstance(value, list):
            raise fail(f"expected {_type_name(tp)}, got {_describe(value)}")
        (item_type,) = typing.get_args(tp)
        return [_convert(item_type, item, merged, path + (index,)) for index, item in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, Mapping):
            raise fail(f"expected {_type_name(tp)}, got {_describe(value)}")
        _, value_type = typing.get_args(tp)
        return {str(key): _convert(value_type, item, merged, path + (key,)) for key, item in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"expected bool, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"expected int, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"expected float, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail(f"expected str, got {_describe(value)}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"config schema uses an unsupported type {tp!r} at {format_key_path(path)}")


def _convert_dataclass(cls: Any, raw: Mapping[str, Any], merged: _Sourced, path: KeyPath) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            key_path = path + (key,)
            raise ConfigError(merged.source_of(key_path), format_key_path(key_path),
                              f"unknown key{hint}; known keys: {', '.join(sorted(fields))}")
    values = {}
    for name, field in fields.items():
        key_path = path + (name,)
        if name in raw:
            values[name] = _convert(hints[name], raw[name], merged, key_path)
            _check_bounds(field, values[name], merged, key_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hints[name]):
                values[name] = _convert(hints[name], {}, merged, key_path)
            else:
                raise ConfigError(merged.source_of(path), format_key_path(key_path), "missing required key")
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        problem = validate()
        if problem is not None:
            key, message = problem
            key_path = path + (key,)
            raise ConfigError(merged.source_of(key_path), format_key_path(key_path), message)
    return instance


def _check_bounds(field: dataclasses.Field, value: Any, merged: _Sourced, path: KeyPath) -> None:
    low, high = field.metadata.get("min"), field.metadata.get("max")
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, (int, float)):
            continue
        if (low is not None and item < low) or (high is not None and item > high):
            bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
            raise ConfigError(merged.source_of(path), format_key_path(path),
                              f"{item!r} is out of range {bounds}")


def to_dict(config: Any) -> Dict[str, Any]:
    return dataclasses.asdict(config)


def config_hash(config: Any) -> str:
    """A stable digest of the resolved config (a dataclass, or a part of one as a dict), for
    manifests and cache keys."""
    canonical = json.dumps(config if isinstance(config, dict) else to_dict(config), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
