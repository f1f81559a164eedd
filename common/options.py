"""The options of a job, defined once.

``JobOptions`` is the single source of every option's name, type, default and rule: the multipart
form of ``POST /v1/jobs`` and of a multipart batch, the ``options`` of a JSON batch, the options stored
in a job record, what the pipeline renders, the flags of ``backdrop replace`` and the OpenAPI document
are all derived from it. To add an option, add a field here (with its ``Exposure``) and use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from common.backgrounds import PRESETS, BackgroundKind, BackgroundSpec, parse_background
from common.errors import InvalidOption
from common.id_specs import CUSTOM_SPEC_ID, DEFAULT_DPI, IdSpec, colour_names, custom_spec, get_spec
from common.netsafe import check_url
from common.print_sheets import get_paper

MAX_SPECS = 8  # ID-photo specs in one job
# Options that mean something only for ID photos (with id_spec).
ID_PHOTO_ONLY = ("custom_size", "custom_dpi", "head_ratio", "crown_margin", "max_kb", "min_kb", "sheet", "matte_source")


class Surface(StrEnum):
    """Where an option can be given."""

    JOB = "job"  # the form of POST /v1/jobs
    BATCH = "batch"  # POST /v1/batches (multipart form or JSON options)
    CLI = "cli"  # backdrop replace
    ID_CLI = "id_cli"  # backdrop idphoto


EVERY_SURFACE = frozenset(Surface)
SERVICE = frozenset({Surface.JOB, Surface.BATCH})
ID_PHOTO = frozenset({Surface.JOB, Surface.BATCH, Surface.ID_CLI})  # the options of the ID-photo mode
REPLACE = frozenset({Surface.JOB, Surface.BATCH, Surface.CLI})  # background replacement only


@dataclass(frozen=True)
class Exposure:
    """Field metadata: the surfaces that accept an option, its short command-line flag, and its long
    flag where it is not ``--`` and the name with dashes."""

    surfaces: frozenset[Surface] = EVERY_SURFACE
    short_flag: str | None = None
    long_flag: str | None = None


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


AUTO_BACKGROUND = "auto"  # ID photos: each spec's first allowed colour


def _checked_background(value: str) -> str:
    name = value.strip().lower()
    if name not in (BackgroundKind.IMAGE.value, AUTO_BACKGROUND) and name not in colour_names():
        parse_background(value)  # InvalidOption with the accepted forms
    return value


def _known_specs(values: list[str]) -> list[str]:
    ids = list(dict.fromkeys(values))
    for spec_id in ids:
        if spec_id != CUSTOM_SPEC_ID:
            get_spec(spec_id)  # UnknownSpec naming the catalogue
    return ids


def _paper(value: Any) -> Any:
    return get_paper(value).id if isinstance(value, str) and value.strip() else value or None


# At most 5 digits before the point: a side of 100,000 px or mm is no photo (and 400 digits are infinity).
_SIZE = re.compile(r"^\s*(\d{1,5}(?:\.\d+)?)\s*[x×]\s*(\d{1,5}(?:\.\d+)?)\s*(mm|px)\s*$", re.IGNORECASE)
_RATIO_RANGE = re.compile(r"^\s*(0?\.\d+|1(?:\.0*)?)\s*(?:-\s*(0?\.\d+|1(?:\.0*)?)\s*)?$")


def parse_size(text: str) -> tuple[float, float, str]:
    """``"35x45mm"`` -> (35.0, 45.0, "mm"); ``"600x800px"`` -> (600.0, 800.0, "px")."""
    match = _SIZE.match(text)
    if match is None:
        raise InvalidOption(f"custom_size {text!r}: expected WIDTHxHEIGHTmm or WIDTHxHEIGHTpx, e.g. 35x45mm")
    return float(match.group(1)), float(match.group(2)), match.group(3).lower()


def parse_ratio_range(text: str, name: str) -> float | tuple[float, float]:
    """``"0.75"`` -> 0.75; ``"0.7-0.8"`` -> (0.7, 0.8): shares of the photo height."""
    match = _RATIO_RANGE.match(text)
    if match is None:
        raise InvalidOption(f"{name} {text!r}: expected a share of the height (0.75) or a range (0.7-0.8)")
    low = float(match.group(1))
    return (low, float(match.group(2))) if match.group(2) else low


def _checked_size(value: str | None) -> str | None:
    if value is not None:
        parse_size(value)
    return value


def _ratio_validator(name: str) -> Any:
    def check(value: str | None) -> str | None:
        if value is not None:
            parse_ratio_range(value, name)
        return value

    return AfterValidator(check)


def _checked_url(value: str | None) -> str | None:
    return check_url(value) if value else None


BACKGROUND_HELP = (
    f"{', '.join(PRESETS)}, #RRGGBB, #RGB, transparent, blur, or image (with a background image, "
    "scaled to cover the photo); ID photos: a plain colour, a colour a spec names (cream, light-grey, ...), "
    "or auto (the default there: each spec's first allowed colour)"
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
    id_spec: Annotated[
        list[str],
        BeforeValidator(_comma_list),
        AfterValidator(_known_specs),
        Field(
            max_length=MAX_SPECS,
            description="ID-photo mode: comma-separated spec ids (GET /v1/id-specs), or custom with custom_size",
            examples=[["icao-35x45"]],
        ),
        Exposure(surfaces=ID_PHOTO, short_flag="-s", long_flag="--spec"),
    ] = []
    custom_size: Annotated[
        str | None,
        AfterValidator(_checked_size),
        Field(description="the size of id_spec=custom: WIDTHxHEIGHTmm (with custom_dpi) or WIDTHxHEIGHTpx"),
        Exposure(surfaces=ID_PHOTO),
    ] = None
    custom_dpi: Annotated[
        float,
        Field(gt=0, le=2400, description="the resolution of a custom size in mm"),
        Exposure(surfaces=ID_PHOTO),
    ] = DEFAULT_DPI
    head_ratio: Annotated[
        str | None,
        _ratio_validator("head_ratio"),
        Field(description="id_spec=custom: chin to crown as a share of the height, 0.75 or a range 0.7-0.8"),
        Exposure(surfaces=ID_PHOTO),
    ] = None
    crown_margin: Annotated[
        str | None,
        _ratio_validator("crown_margin"),
        Field(description="id_spec=custom: top of the hair to the top edge, a share of the height or a range"),
        Exposure(surfaces=ID_PHOTO),
    ] = None
    max_kb: Annotated[
        float | None,
        Field(
            gt=0, allow_inf_nan=False, description="ID photos: the highest JPEG quality whose file fits in this many KB"
        ),
        Exposure(surfaces=ID_PHOTO),
    ] = None
    min_kb: Annotated[
        float | None,
        Field(
            gt=0,
            allow_inf_nan=False,
            description="ID photos: a file of at least this many KB (met by quality, never padding)",
        ),
        Exposure(surfaces=ID_PHOTO),
    ] = None
    sheet: Annotated[
        Literal["4x6", "3.5x5", "5x7", "a4"] | None,
        BeforeValidator(_paper),
        Field(description="ID photos: also a print sheet of the photo tiled on this paper, at 300 dpi"),
        Exposure(surfaces=ID_PHOTO),
    ] = None
    cut_guides: Annotated[
        bool,
        Field(description="ID photos: thin cut guides between the photos of a sheet"),
        Exposure(surfaces=ID_PHOTO),
    ] = True
    matte_source: Annotated[
        Literal["network", "alpha"],
        Field(description="network: MODNet's matte; alpha: the photo's own transparency (already cut out)"),
        Exposure(surfaces=ID_PHOTO),
    ] = "network"
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
        Exposure(surfaces=REPLACE),
    ] = [OutputKind.COMPOSITE]
    decontaminate: Annotated[
        bool,
        Field(description="remove the old background's colour from hair and edges"),
        Exposure(surfaces=REPLACE),
    ] = True
    webhook_url: Annotated[
        str | None,
        AfterValidator(_checked_url),
        Field(description="where to POST signed events (Standard Webhooks); a batch sends one batch.completed"),
        Exposure(surfaces=SERVICE),
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

    @model_validator(mode="before")
    @classmethod
    def _id_photos_default_to_the_specs_background(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("id_spec") and values.get("background") is None:
            return {**values, "background": AUTO_BACKGROUND}
        return values

    @model_validator(mode="after")
    def _consistent(self) -> JobOptions:
        background = self.background.strip().lower()
        if background == BackgroundKind.TRANSPARENT.value and self.format not in (None, OutputFormat.PNG):
            raise InvalidOption(f"a transparent background needs PNG output, not {self.format}")
        if self.is_id_photo:
            self._check_id_photo(background)
        else:
            given = sorted(
                name for name in ID_PHOTO_ONLY if getattr(self, name) != type(self).model_fields[name].default
            )
            if given:
                raise InvalidOption(f"{', '.join(given)}: only for ID photos (with id_spec)")
            if background == AUTO_BACKGROUND or (background in colour_names() and background not in PRESETS):
                parse_background(self.background)  # named ID-photo colours and auto are for ID photos
        return self

    def _check_id_photo(self, background: str) -> None:
        if self.format not in (None, OutputFormat.JPEG, OutputFormat.PNG):
            raise InvalidOption(f"an ID photo is JPEG or PNG, not {self.format.value}")
        if self.outputs != [OutputKind.COMPOSITE]:
            raise InvalidOption("outputs are for background replacement; an ID photo job gives id_photo, report, sheet")
        if background != AUTO_BACKGROUND and background not in colour_names():
            kind = parse_background(self.background).kind
            if kind is not BackgroundKind.COLOR:
                raise InvalidOption(f"an ID photo needs a plain colour background, not {kind.value}")
        custom = CUSTOM_SPEC_ID in self.id_spec
        if custom != (self.custom_size is not None):
            raise InvalidOption("id_spec=custom goes with custom_size (e.g. 35x45mm), and custom_size with custom")
        if not custom and (self.head_ratio or self.crown_margin):
            raise InvalidOption("head_ratio and crown_margin describe id_spec=custom")
        if self.min_kb is not None and self.max_kb is not None and self.min_kb > self.max_kb:
            raise InvalidOption(f"min_kb {self.min_kb:g} is above max_kb {self.max_kb:g}")
        self.id_specs()  # a custom spec with impossible numbers is refused now, not in the worker

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
    def is_id_photo(self) -> bool:
        return bool(self.id_spec)

    def id_specs(self) -> list[IdSpec]:
        """The specs of an ID-photo job: catalogue entries, and the custom one built from its options."""
        specs = []
        for spec_id in self.id_spec:
            if spec_id != CUSTOM_SPEC_ID:
                specs.append(get_spec(spec_id))
                continue
            width, height, unit = parse_size(self.custom_size or "")
            size = (
                {"width_mm": width, "height_mm": height, "dpi": self.custom_dpi}
                if unit == "mm"
                else {"width_px": round(width), "height_px": round(height)}
            )
            extra = {"crown_margin": parse_ratio_range(self.crown_margin, "crown_margin")} if self.crown_margin else {}
            head = parse_ratio_range(self.head_ratio, "head_ratio") if self.head_ratio else (0.70, 0.80)
            specs.append(custom_spec(**size, head_ratio=head, max_kb=self.max_kb, min_kb=self.min_kb, **extra))
        return specs

    def id_background(self) -> str | None:
        """The background of an ID photo: None for each spec's own, else the colour asked for."""
        return None if self.background.strip().lower() == AUTO_BACKGROUND else self.background

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
