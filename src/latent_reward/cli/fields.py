"""Typer options made from a pydantic config's fields, so that an option's default, bounds, choices and help are the
config's own (its default, ge/le, Literal and description): a config changes, its options follow.

typer has no pydantic source (pydantic-settings' CLI parses argparse, without typer's help, groups or completion), so
the mapping from a field to an option is written here.
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from latent_reward.cli.groups import Group, GroupedCommand, Options, with_group

Parser = Callable[[str], Any]


@dataclass(frozen=True)
class ConfigOption:
    """One option made from a field: its parameter name, the field's dotted path, the field and the default the root
    config gives it (a nested config's default may set it)."""

    name: str
    path: str
    field: FieldInfo
    default: Any


def load(reference: str) -> type[BaseModel]:
    """The config class named "package.module:Class"."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def config_options(root: type[BaseModel], fields: Sequence[str]) -> list[ConfigOption]:
    """The fields named "path" or "option=path" (a path runs through nested configs: "readout.sweep.n_boot"); the
    option is called after the path's last part unless named."""
    out = []
    for entry in fields:
        name, _, path = entry.rpartition("=")
        field, default = _field(root, path)
        out.append(ConfigOption(name or path.rpartition(".")[2], path, field, default))
    return out


def _field(root: type[BaseModel], path: str) -> tuple[FieldInfo, Any]:
    model, instance = root, None  # instance: the enclosing config's default, when it has one
    *outer, last = path.split(".")
    for part in outer:
        field = model.model_fields[part]
        value = getattr(instance, part) if instance is not None else field.get_default(call_default_factory=True)
        instance = value if isinstance(value, BaseModel) else None
        model = type(value) if instance is not None else _model_in(field.annotation)
    field = model.model_fields[last]
    default = getattr(instance, last) if instance is not None else field.get_default(call_default_factory=True)
    return field, default


def _model_in(annotation: Any) -> type[BaseModel]:
    for kind in (annotation, *typing.get_args(annotation)):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
    raise TypeError(f"{annotation} is not a config")


def _optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None was allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [k for k in typing.get_args(annotation) if k is not type(None)]
        if len(kinds) == 1:
            return kinds[0], len(kinds) < len(typing.get_args(annotation))
    return annotation, False


def _text(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _items(element: Any, name: str) -> Parser:
    """The parser of a comma-separated option whose items are `element` (int, float, str or a Literal)."""
    choices = typing.get_args(element) if typing.get_origin(element) is Literal else None

    def parse(text: str) -> tuple[Any, ...]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if choices is not None:
            unknown = [item for item in items if item not in choices]
            if unknown or not items:
                raise typer.BadParameter(f"choose from {', '.join(choices)}", param_hint=f"--{name}")
            return tuple(items)
        try:
            return tuple(element(item) for item in items)
        except ValueError:  # int or float items
            raise typer.BadParameter(f"must be comma-separated numbers, not {text!r}", param_hint=f"--{name}") from None

    return parse


def _metavar(element: Any) -> str:
    if typing.get_origin(element) is Literal:
        return "[" + "|".join(typing.get_args(element)) + "],..."
    return {int: "INTEGER", float: "FLOAT"}.get(element, "TEXT") + ",..."


def make_option(
    option: ConfigOption,
    panel: str | None = None,
    parse: Parser | None = None,
    repeatable: bool = False,
    argument: bool = False,
) -> tuple[Any, Any, Any]:
    """(annotation, typer.Option or typer.Argument, default) for the field: a bool is --x/--no-x, a Literal lists its
    choices, a tuple is comma-separated (or a repeatable option), ge/le are the option's min/max."""
    field, name = option.field, option.name.replace("_", "-")
    if not field.description:
        raise TypeError(f"{option.path} has no description, which its option's help would be")
    default: Any = ... if option.default is PydanticUndefined else option.default
    kind, optional = _optional(field.annotation)
    settings: dict[str, Any] = {"help": field.description, "rich_help_panel": panel}
    for constraint in field.metadata:
        settings["min"] = getattr(constraint, "ge", settings.get("min"))
        settings["max"] = getattr(constraint, "le", settings.get("max"))
    annotation = field.annotation
    if typing.get_origin(kind) is tuple:
        element = typing.get_args(kind)[0]
        if repeatable:
            annotation, default = list[element], list(default or ())  # type: ignore[valid-type]  # a runtime type
        else:
            annotation = tuple | None if optional else tuple
            settings.update(parser=parse or _items(element, name), metavar=_metavar(element))
            default = None if default is None else ",".join(_text(item) for item in default)
    if argument:
        return annotation, typer.Argument(help=field.description), default
    return annotation, typer.Option(**{k: v for k, v in settings.items() if v is not None}), default


def _nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """{"a.b": 1, "a.c": 2, "d": 3} -> {"a": {"b": 1, "c": 2}, "d": 3}."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        *outer, last = path.split(".")
        level = out
        for part in outer:
            level = level.setdefault(part, {})
        level[last] = value
    return out


def _over_defaults(root: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """`values`, with the fields a nested config's declared default sets (and the command does not) added: a nested
    config built from a dict would otherwise take its class's defaults, not the ones its parent declares."""
    out = dict(values)
    for part, value in values.items():
        if not isinstance(value, dict):
            continue
        field = root.model_fields[part]
        declared = field.get_default(call_default_factory=True)
        base = declared.model_dump(exclude_unset=True) if isinstance(declared, BaseModel) else {}
        model = type(declared) if isinstance(declared, BaseModel) else _model_in(field.annotation)
        out[part] = _merged(base, _over_defaults(model, value))
    return out


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def same(*names: str) -> dict[str, str]:
    """`given` for the fields that take the command's arguments of the same name as they are."""
    return {name: name for name in names}


def with_config_options(
    config: str,
    fields: Sequence[str],
    param: str = "config",
    *,
    given: Mapping[str, str] | None = None,
    parse: Mapping[str, Parser] | None = None,
    repeatable: Collection[str] = (),
    arguments: Collection[str] = (),
    partial: bool = False,
    panel: str | None = None,
) -> Callable[[Callable[..., Any]], GroupedCommand]:
    """Give a command options made from the fields of `config` ("package.module:Class", imported when typer first
    reads the command) in place of its parameter `param`, which receives the config built from them.

    `fields`: "path" or "option=path" (see config_options). `given`: field path -> the command's own parameter that
    supplies it (e.g. {"seed": "seed"}). `parse`: option -> the parser of its text. `repeatable`: tuple fields given
    as a repeated option instead of comma-separated. `arguments`: fields that are positional arguments. `partial`: the
    command receives the values as a dict, nested like the config, to build the config with what else it needs."""
    given, parse = dict(given or {}), dict(parse or {})

    def options() -> Options:
        made = config_options(load(config), fields)
        return {
            o.name: make_option(o, panel, parse.get(o.name), o.name in repeatable, o.name in arguments) for o in made
        }

    def build(values: dict[str, Any], others: dict[str, Any]) -> Any:
        root = load(config)
        paths = {o.name: o.path for o in config_options(root, fields)}
        chosen = {paths[name]: tuple(value) if name in repeatable else value for name, value in values.items()}
        chosen.update({path: others[name] for path, name in given.items()})
        nested = _over_defaults(root, _nested(chosen))
        return nested if partial else root.model_validate(nested)

    return with_group(Group(param, options, build, source=(config, tuple(fields))))
