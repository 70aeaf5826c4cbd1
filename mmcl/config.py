"""Typed YAML configs with dotted command-line overrides.

Every config section is a pydantic model that forbids unknown keys, so a typo such as
``optim.lrr=1`` fails before any work starts with a message naming the key and the file.
Every field carries a ``description``; ``to_commented_yaml`` prints it beside the value.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mmcl.errors import UserError


class ConfigError(UserError):
    """A config file or override that does not match its schema."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, fields are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


SectionT = TypeVar("SectionT", bound=Section)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=1e-3", "data.batch_size=64"]`` into a nested dict; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is set to a value and also used as a section")
        node[parts[-1]] = _parse_scalar(text)
    return nested


def _parse_scalar(text: str) -> Any:
    value = yaml.safe_load(text) if text.strip() else ""
    # YAML 1.1 reads "1e-3" as a string; users mean a number.
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            return value
    return value


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_json(path: str | Path, what: str) -> Any:
    """A JSON file's content; a UserError naming the file and `what` it should be when it is missing or not JSON."""
    import json

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not JSON, expected {what} ({err})") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def validate(schema: type[SectionT], data: dict[str, Any], source: str) -> SectionT:
    """Validate ``data`` against ``schema``; errors name every bad key and ``source``."""
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe_errors(schema, err, source)) from None


def load_config(schema: type[SectionT], path: str | Path | None, overrides: list[str] = ()) -> SectionT:
    """Read ``path`` (or start from defaults when None), apply dotted overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    data = merge(data, parse_overrides(list(overrides)))
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        source += " with overrides " + " ".join(overrides)
    return validate(schema, data, source)


def _describe_errors(schema: type[Section], err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) or "<top level>"
        if e["type"] == "extra_forbidden":
            hint = _suggest(schema, loc)
            lines.append(f"{key}: unknown key" + (f" (did you mean {hint}?)" if hint else ""))
        elif e["type"] == "missing":
            lines.append(f"{key}: required field is missing")
        else:
            lines.append(f"{key}: {e['msg']} (got {e.get('input')!r})")
    return f"{source}: invalid config: " + "; ".join(lines)


def _suggest(schema: type[Section], loc: list[str]) -> str | None:
    """Closest known key at the same level as an unknown one, as a dotted path."""
    model: Any = schema
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    known = list(getattr(model, "model_fields", {}))
    match = difflib.get_close_matches(loc[-1], known, n=1)
    return ".".join(loc[:-1] + match) if match else None


def to_commented_yaml(section: Section, indent: int = 0) -> str:
    """The resolved config as YAML, with each field's description as a comment above it."""
    pad = "  " * indent
    out = []
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if field.description:
            out.append(f"{pad}# {field.description}")
        if isinstance(value, Section):
            out.append(f"{pad}{name}:")
            out.append(to_commented_yaml(value, indent + 1))
        elif value is None and (unset := _optional_section(field.annotation)) is not None:
            out.append(f"{pad}{name}: null  # unset; its fields, when set:")
            out.append(_commented_fields(unset, indent + 1))
        else:
            plain = value.model_dump(mode="json") if isinstance(value, BaseModel) else _jsonable(value)
            dumped = yaml.safe_dump({name: plain}, sort_keys=False, default_flow_style=False).rstrip()
            out.extend(pad + line for line in dumped.splitlines())
    return "\n".join(out)


def flatten(tree: dict, prefix: str = "") -> dict:
    """`{dotted.key: value}` for every leaf of a nested dict (lists are leaves)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _optional_section(annotation: Any) -> type[Section] | None:
    """The Section class of an `X | None` field, so that an unset section's fields can still be documented."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, Section):
            return arg
    return None


def _commented_fields(section: type[Section], indent: int) -> str:
    """A section's fields as commented-out YAML (defaults, or `required`), each under its description."""
    pad = "  " * indent
    out = []
    for name, field in section.model_fields.items():
        if field.description:
            out.append(f"{pad}# {field.description}")
        if field.is_required():
            out.append(f"{pad}# {name}: (required)")
            continue
        default = _jsonable(field.get_default(call_default_factory=True))
        dumped = yaml.safe_dump(default, sort_keys=False, default_flow_style=True, width=10**6)
        out.append(f"{pad}# {name}: {dumped.removesuffix(chr(10)).removesuffix('...').strip()}")
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def save_config(section: Section, path: str | Path) -> None:
    """Write the resolved config (with field descriptions) so a run can be reproduced from its outputs."""
    Path(path).write_text(to_commented_yaml(section) + "\n", encoding="utf-8")
