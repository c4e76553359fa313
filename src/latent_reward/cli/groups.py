"""Option groups: options a decorator adds to a command, handed to the command as one value it builds from them.

typer reads a command's signature. A grouped command's signature is worked out when typer first asks for it, not when
the module is imported: a group made from a config (cli/fields.py) imports the config's module then, and most configs
live beside code that loads torch; `app.for_arguments` lets typer build only the command that runs.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

Options = dict[str, tuple[Any, Any, Any]]  # parameter -> (type, typer.Option or typer.Argument, default)


@dataclass(frozen=True)
class Group:
    """Options given to a command as one value (its parameter `name`), built from them."""

    name: str
    options: Callable[[], Options]  # called once, when typer first reads the command's signature
    build: Callable[[dict[str, Any], dict[str, Any]], Any]  # (the group's values, the command's other arguments) -> it
    source: tuple[str, tuple[str, ...]] | None = None  # the config and the fields the options are made from


class GroupedCommand:
    """A command with a group's options in place of its parameter `group.name` (see `with_group`)."""

    def __init__(self, function: Callable[..., Any], group: Group):
        # typer reads the name and the docstring (the command's name and help); inspect.unwrap follows __wrapped__
        self.__name__, self.__qualname__ = function.__name__, function.__qualname__
        self.__module__, self.__doc__, self.__wrapped__ = function.__module__, function.__doc__, function
        self.function, self.group = function, group

    @functools.cached_property
    def options(self) -> Options:
        return self.group.options()

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        """The command's own parameters (annotations resolved) with the group's options where `group.name` was."""
        signature = inspect.signature(self.function)
        names = list(signature.parameters)
        if self.group.name not in names:
            raise TypeError(f"{self.__name__} has no parameter {self.group.name!r} for its option group")
        hints = _resolved(self.function, [n for n in names if n != self.group.name])
        keyword = inspect.Parameter.KEYWORD_ONLY
        kept = [
            p.replace(annotation=hints.get(name, p.annotation), kind=keyword)
            for name, p in signature.parameters.items()
            if name != self.group.name
        ]
        added = [
            inspect.Parameter(name, keyword, default=default, annotation=Annotated[kind, option])
            for name, (kind, option, default) in self.options.items()
        ]
        at = names.index(self.group.name)
        return signature.replace(parameters=kept[:at] + added + kept[at:])

    @property
    def __annotations__(self) -> dict[str, Any]:  # type: ignore[override]  # typer also reads the type hints
        return {name: p.annotation for name, p in self.__signature__.parameters.items()}

    def __call__(self, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in self.options}
        return self.function(**{self.group.name: self.group.build(values, kwargs)}, **kwargs)


def with_group(group: Group) -> Callable[[Callable[..., Any]], GroupedCommand]:
    """Give a command the group's options in place of its parameter `group.name`; the command receives the value the
    group builds from them. Groups stack: each decorator replaces its own parameter."""
    return lambda function: GroupedCommand(function, group)


def _resolved(function: Callable[..., Any], names: list[str]) -> dict[str, Any]:
    """typing.get_type_hints of `function`'s parameters `names`, each that resolves: the parameter another group
    replaces may be annotated with a type imported for type checkers alone (a config whose module loads torch)."""
    annotations = getattr(function, "__annotations__", {})

    def view() -> None: ...  # an annotation, resolved in the module of the function at the end of __wrapped__

    view.__wrapped__ = inspect.unwrap(function)  # type: ignore[attr-defined]
    hints = {}
    for name in names:
        view.__annotations__ = {name: annotations[name]} if name in annotations else {}
        try:
            hints.update(typing.get_type_hints(view, include_extras=True))
        except NameError:
            continue
    return hints
