"""The options of a job, defined once.

``JobOptions`` is the single source of every option's name, type, default and rule: the multipart
form of ``POST /v1/jobs`` and of a multipart batch, the ``options`` of a JSON batch, the options stored
in a job record, what the pipeline renders, the flags of ``backdrop replace`` and the OpenAPI document
are all derived from it. To add an option, add a field here (with its ``Exposure``) and use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from common.backgrounds import PRESETS, BackgroundKind, BackgroundSpec, parse_background
from common.errors import InvalidOption
from common.netsafe import check_url


class Surface(StrEnum):
    """Where an option can be given."""

    JOB = "job"  # the form of POST /v1/jobs
    BATCH = "batch"  # POST /v1/batches (multipart form or JSON options)
    CLI = "cli"  # backdrop replace


@dataclass(frozen=True)
class Exposure:
    """Field metadata: the surfaces that accept an option, and its short command-line flag."""

    surfaces: frozenset[Surface] = frozenset(Surface)
    short_flag: str | None = None


def exposure(field: FieldInfo) -> Exposure:
    return next((item for item in field.metadata if isinstance(item, Exposure)), Exposure())


class OutputFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"

    @classmethod
    def parse(cls, value: str) -> OutputFormat:
        """``value`` in any case, with ``jpg`` for ``jpeg``; InvalidOption otherwise."""
        name = value.strip().lower()
        try:
            return cls("jpeg" if name == "jpg" else name)
        except ValueError:
            accepted = ", ".join(f.value for f in cls)
            raise InvalidOption(f"unknown output format {value!r}; accepted: {accepted}") from None


class OutputKind(StrEnum):
    COMPOSITE = "composite"  # the photo on its new background
    CUTOUT = "cutout"  # RGBA PNG: the person on transparency
    MATTE = "matte"  # 8-bit grayscale PNG of the alpha matte


def file_extension(fmt: str) -> str:
    """The file name extension of an output format ("jpeg" files are named .jpg)."""
    return "jpg" if fmt == OutputFormat.JPEG else fmt


def _format_name(value: Any) -> Any:
    if isinstance(value, str):
        return OutputFormat.parse(value) if value.strip() else None
    return value


def _comma_list(value: Any) -> Any:
    """``"a,b"``, ``["a", "b,c"]`` -> ``["a", "b", "c"]`` (forms send lists as comma-separated text)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple | set | frozenset):
        return [part.strip().lower() for item in value for part in str(item).split(",") if part.strip()]
    return value


def _sorted_unique(values: list[Any]) -> list[Any]:
    return sorted(set(values))


def _checked_background(value: str) -> str:
    if value.strip().lower() != BackgroundKind.IMAGE.value:
        parse_background(value)  # InvalidOption with the accepted forms
    return value


def _checked_url(value: str | None) -> str | None:
    return check_url(value) if value else None


BACKGROUND_HELP = (
    f"{', '.join(PRESETS)}, #RRGGBB, #RGB, transparent, blur, or image (with a background image, "
    "scaled to cover the photo)"
)


class JobOptions(BaseModel):
    """What a user asks of one photo. Invalid values raise ``InvalidOption``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    background: Annotated[
        str,
        AfterValidator(_checked_background),
        Field(description=BACKGROUND_HELP, examples=["blue"]),
        Exposure(short_flag="-b"),
    ] = "blue"
    format: Annotated[
        OutputFormat | None,
        BeforeValidator(_format_name),
        Field(description="jpeg (or jpg), png or webp; default: jpeg, or png for a transparent background"),
        Exposure(short_flag="-f"),
    ] = None
    quality: Annotated[
        int,
        Field(ge=1, le=100, description="JPEG and WebP quality"),
        Exposure(short_flag="-q"),
    ] = 92
    outputs: Annotated[
        list[OutputKind],
        BeforeValidator(_comma_list),
        AfterValidator(_sorted_unique),
        Field(
            min_length=1,
            description="comma-separated: composite, cutout (RGBA PNG), matte (8-bit PNG)",
            examples=[["composite"]],
        ),
    ] = [OutputKind.COMPOSITE]
    decontaminate: Annotated[
        bool,
        Field(description="remove the old background's colour from hair and edges"),
    ] = True
    webhook_url: Annotated[
        str | None,
        AfterValidator(_checked_url),
        Field(description="where to POST signed events (Standard Webhooks); a batch sends one batch.completed"),
        Exposure(surfaces=frozenset({Surface.JOB, Surface.BATCH})),
    ] = None
    webhook_events: Annotated[
        list[Literal["started", "completed"]],
        BeforeValidator(_comma_list),
        AfterValidator(_sorted_unique),
        Field(min_length=1, description="comma-separated: completed, started"),
        Exposure(surfaces=frozenset({Surface.JOB})),
    ] = ["completed"]

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise InvalidOption(describe_validation_error(exc)) from None

    @model_validator(mode="after")
    def _transparent_needs_png(self) -> JobOptions:
        transparent = self.background.strip().lower() == BackgroundKind.TRANSPARENT.value
        if transparent and self.format not in (None, OutputFormat.PNG):
            raise InvalidOption(f"a transparent background needs PNG output, not {self.format}")
        return self

    @classmethod
    def names(cls, surface: Surface) -> frozenset[str]:
        """The options accepted on ``surface``."""
        return frozenset(name for name, field in cls.model_fields.items() if surface in exposure(field).surfaces)

    @classmethod
    def parse(cls, values: Mapping[str, Any], surface: Surface) -> JobOptions:
        """Options from what a client sent on ``surface``; unknown or misplaced fields are refused."""
        unknown = sorted(set(values) - cls.names(surface))
        if unknown:
            accepted = ", ".join(sorted(cls.names(surface)))
            raise InvalidOption(f"unknown option(s): {', '.join(unknown)}; accepted: {accepted}")
        return cls(**{name: value for name, value in values.items() if value is not None})

    @property
    def is_transparent(self) -> bool:
        return self.background.strip().lower() == BackgroundKind.TRANSPARENT.value

    @property
    def composite_format(self) -> OutputFormat:
        if self.format is not None:
            return self.format
        return OutputFormat.PNG if self.is_transparent else OutputFormat.JPEG

    @property
    def output_kinds(self) -> frozenset[OutputKind]:
        return frozenset(self.outputs)

    def background_spec(self, image: Any = None) -> BackgroundSpec:
        """The background to render; ``image`` is the decoded background image for ``background=image``."""
        return parse_background(self.background, image=image)


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each refused field and why, for an ``InvalidOption`` message."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())) or "options"
        parts.append(f"{where}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts)


def outputs_text(outputs: Iterable[str]) -> str:
    """The comma-separated form of ``outputs``, as forms and the command line send it."""
    return ",".join(outputs)
