"""Command-line flags of a job's options, generated from ``JobOptions``.

Every option that ``JobOptions`` accepts on a surface becomes one click option: ``--name`` (underscores
as dashes) and the field's short flag, a click type from its annotation and constraints (``IntRange``
from ge/le, ``Choice`` from an enum or ``Literal``, ``--x/--no-x`` for a bool, comma-separated text for
a list), and the field's default and description. Adding an option to ``JobOptions`` adds its flag.

An option that is also a setting (``decontaminate``) has no default of its own here: left unset, it
takes the setting where the photos are processed (this process's ``Settings``, or the server's).
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
import click
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from common.errors import InvalidOption
from common.options import JobOptions, Surface, exposure
from common.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


class FieldChoice(click.Choice):
    """The values of an enum option; another spelling its field accepts (``jpg``, ``PNG``) means the same value."""

    def __init__(self, choices: Sequence[str], field_adapter: TypeAdapter[Any] | None = None) -> None:
        super().__init__(choices, case_sensitive=False)
        self.field_adapter = field_adapter

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if self.field_adapter is not None and isinstance(value, str):
            with suppress(ValidationError, InvalidOption):
                parsed = self.field_adapter.validate_python(value)
                return parsed.value if isinstance(parsed, enum.Enum) else parsed
        return super().convert(value, param, ctx)


class CommaList(click.ParamType):
    """Comma-separated text (``a,b``), as the forms of the API take a list; each item checked by ``item``."""

    name = "list"

    def __init__(self, item: click.ParamType) -> None:
        self.item = item

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[Any]:
        parts = value if isinstance(value, list | tuple) else str(value).split(",")
        return [self.item.convert(str(part).strip(), param, ctx) for part in parts if str(part).strip()]

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        inner = self.item.get_metavar(param, ctx) if ctx is not None else None
        return f"{inner or self.item.name.upper()},..."


def flag_name(name: str) -> str:
    """The long flag of an option: ``--webhook-url`` for ``webhook_url``."""
    return "--" + name.replace("_", "-")


def defers_to_setting(name: str) -> bool:
    """Whether the option, left unset, takes the setting of the same name rather than a default of its own."""
    return name in Settings.model_fields


def setting_env_name(name: str) -> str:
    return f"{Settings.model_config.get('env_prefix', '')}{name}".upper()


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _range(annotation: type, metadata: Sequence[Any]) -> click.ParamType:
    low, low_open = None, False
    high, high_open = None, False
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Gt):
            low, low_open = item.gt, True
        elif isinstance(item, annotated_types.Le):
            high = item.le
        elif isinstance(item, annotated_types.Lt):
            high, high_open = item.lt, True
    if low is None and high is None:
        return click.INT if annotation is int else click.FLOAT
    kind = click.IntRange if annotation is int else click.FloatRange
    return kind(min=low, max=high, min_open=low_open, max_open=high_open)


def _scalar_type(annotation: Any, metadata: Sequence[Any], field_adapter: TypeAdapter[Any] | None) -> click.ParamType:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return FieldChoice([str(member.value) for member in annotation], field_adapter)
    if get_origin(annotation) is Literal:
        return FieldChoice([str(arg) for arg in get_args(annotation)], field_adapter)
    if annotation in (int, float):
        return _range(annotation, metadata)
    return click.STRING


def click_type(field: FieldInfo) -> click.ParamType:
    """The click type of a (non-bool) option, from its annotation and constraints."""
    annotation = _without_none(field.annotation)
    if get_origin(annotation) in (list, tuple, set, frozenset):
        items = get_args(annotation)
        return CommaList(_scalar_type(items[0] if items else str, (), None))
    adapter = TypeAdapter(Annotated[(field.annotation, *field.metadata)])
    return _scalar_type(annotation, field.metadata, adapter)


def _default(field: FieldInfo) -> Any:
    default = field.get_default(call_default_factory=True)
    if isinstance(default, enum.Enum):
        return default.value
    if isinstance(default, list | tuple | set | frozenset):
        return ",".join(str(item.value if isinstance(item, enum.Enum) else item) for item in default)
    return default


def option_decorator(name: str, field: FieldInfo, note: str = "") -> Callable[[F], F]:
    """The click option of one field of ``JobOptions``; ``note`` adds to its description what is
    particular to the command line."""
    long = exposure(field).long_flag or flag_name(name)
    short = exposure(field).short_flag
    help_text = "; ".join(part for part in (field.description, note) if part) or None
    if defers_to_setting(name):
        default: Any = None
        show_default: bool | str = f"{setting_env_name(name)} setting"
    else:
        default, show_default = _default(field), True
    if _without_none(field.annotation) is bool:
        decls = [f"{long}/--no-{long[2:]}", *([short] if short else []), name]
        return click.option(*decls, default=default, show_default=show_default, help=help_text)
    decls = [*([short] if short else []), long, name]
    return click.option(*decls, type=click_type(field), default=default, show_default=show_default, help=help_text)


def job_option_flags(
    surface: Surface = Surface.CLI, *, model: type[JobOptions] = JobOptions, notes: Mapping[str, str] | None = None
) -> Callable[[F], F]:
    """A decorator adding one click option per option of ``model`` accepted on ``surface``, in field order.

    The command receives each as a keyword argument named like the field; ``None`` means not given.
    """
    accepted = model.names(surface)
    fields = [(name, field) for name, field in model.model_fields.items() if name in accepted]

    def decorate(command: F) -> F:
        for name, field in reversed(fields):
            command = option_decorator(name, field, (notes or {}).get(name, ""))(command)
        return command

    return decorate


def given(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options given (or defaulted) on the command line: those left unset are left out."""
    return {name: value for name, value in values.items() if value is not None}


def with_settings(values: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """``values`` with each unset option that is also a setting taken from ``settings``."""
    deferred = {name: getattr(settings, name) for name in JobOptions.model_fields if defers_to_setting(name)}
    return {**deferred, **values}
