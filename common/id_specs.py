"""The catalogue of ID-photo specs (``id_specs.toml``) and custom specs.

A spec says what a document asks of its photo: the print size and DPI (or a pixel size), the head
geometry, the allowed background colours and the file rules, each number with its source. Geometry
rules are stored in the unit the rule uses and read here as ratios of the photo height, which is what
framing and the compliance report work in.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from enum import StrEnum
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.backgrounds import PRESETS
from common.errors import InvalidSpec, UnknownSpec

MM_PER_INCH = 25.4
DEFAULT_DPI = 300.0
CATALOGUE_FILE = "id_specs.toml"
SPEC_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
CUSTOM_SPEC_ID = "custom"


class Unit(StrEnum):
    RATIO = "ratio"  # a fraction of the photo height
    MM = "mm"
    INCH = "in"
    PX = "px"


class Basis(StrEnum):
    OFFICIAL = "official"  # taken from the document's rule
    CONVENTION = "convention"  # no official rule: studio practice, and the source says so


class Measure(StrEnum):
    """The geometric measures a spec can bound, each a ratio of the photo height."""

    HEAD_HEIGHT = "head_height"  # chin to crown
    CROWN_MARGIN = "crown_margin"  # crown to the top edge
    EYE_LINE = "eye_line"  # eye line to the bottom edge
    CHIN_MARGIN = "chin_margin"  # chin to the bottom edge


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bounds(_Strict):
    """A closed range of ratios; either end may be open (None)."""

    min: float | None = None
    max: float | None = None

    @property
    def middle(self) -> float | None:
        if self.min is None and self.max is None:
            return None
        if self.min is None:
            return self.max
        if self.max is None:
            return self.min
        return (self.min + self.max) / 2

    def contains(self, value: float, *, tolerance: float = 1e-9) -> bool:
        if self.min is not None and value < self.min - tolerance:
            return False
        return not (self.max is not None and value > self.max + tolerance)

    def describe(self) -> str:
        low = "-inf" if self.min is None else f"{self.min:.4f}"
        high = "inf" if self.max is None else f"{self.max:.4f}"
        return f"[{low}, {high}]"


class Rule(_Strict):
    """One bound from a document, in the unit the document uses."""

    min: float | None = None
    max: float | None = None
    unit: Unit
    basis: Basis = Basis.OFFICIAL
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.min is None and self.max is None:
            raise ValueError("a rule needs a min, a max or both")
        for value in (self.min, self.max):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"rule bounds must be finite and not negative, got {value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"rule min {self.min} is above its max {self.max}")
        return self


class FileRules(_Strict):
    format: Literal["jpeg", "png"] = "jpeg"
    max_kb: float | None = Field(default=None, gt=0)
    min_kb: float | None = Field(default=None, gt=0)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> FileRules:
        if self.max_kb is not None and self.min_kb is not None and self.min_kb > self.max_kb:
            raise ValueError(f"min_kb {self.min_kb} is above max_kb {self.max_kb}")
        return self


class Colour(_Strict):
    rgb: tuple[int, int, int]
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Colour:
        if not all(0 <= c <= 255 for c in self.rgb):
            raise ValueError(f"colour components must be 0..255, got {self.rgb}")
        return self


class IdSpec(_Strict):
    """One document's photo: size, head geometry, backgrounds and file rules."""

    id: str = Field(pattern=SPEC_ID_PATTERN)
    name_en: str = Field(min_length=1)
    name_zh: str | None = None
    width_mm: float | None = Field(default=None, gt=0)
    height_mm: float | None = Field(default=None, gt=0)
    dpi: float = Field(default=DEFAULT_DPI, gt=0)
    width_px: int | None = Field(default=None, ge=16)
    height_px: int | None = Field(default=None, ge=16)
    size_source: str = Field(min_length=1)
    backgrounds: tuple[str, ...] = ()
    background_source: str | None = None
    head_height: tuple[Rule, ...] = Field(min_length=1)
    crown_margin: tuple[Rule, ...] = ()
    eye_line: tuple[Rule, ...] = ()
    chin_margin: tuple[Rule, ...] = ()
    file: FileRules | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _sizes(self) -> IdSpec:
        has_mm = self.width_mm is not None and self.height_mm is not None
        if (self.width_mm is None) != (self.height_mm is None):
            raise ValueError("give both width_mm and height_mm, or neither")
        if (self.width_px is None) != (self.height_px is None):
            raise ValueError("give both width_px and height_px, or neither")
        if self.width_px is None:
            if not has_mm:
                raise ValueError("a spec needs a print size in mm or a pixel size")
            object.__setattr__(self, "width_px", round(self.width_mm / MM_PER_INCH * self.dpi))  # type: ignore[operator]
            object.__setattr__(self, "height_px", round(self.height_mm / MM_PER_INCH * self.dpi))  # type: ignore[operator]
        if self.width_px < 16 or self.height_px < 16:  # type: ignore[operator]
            raise ValueError(f"pixel size {self.width_px}x{self.height_px} is too small for a photo")
        for measure in Measure:
            bounds = self.bounds(measure)
            if bounds is not None and bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
                raise ValueError(f"the {measure.value} rules of {self.id} do not overlap")
        head = self.bounds(Measure.HEAD_HEIGHT)
        if head is None or head.min is None or head.max is None or not 0 < head.min <= head.max <= 1:
            raise ValueError(f"the head height of {self.id} must be a closed range within (0, 1] of the height")
        return self

    # --- derived values -------------------------------------------------------------------

    @property
    def pixel_size(self) -> tuple[int, int]:
        """(width, height) of the photo in pixels."""
        return int(self.width_px), int(self.height_px)  # type: ignore[arg-type]

    @property
    def print_size_mm(self) -> tuple[float, float]:
        """(width, height) in mm as printed at the spec's DPI."""
        if self.width_mm is not None and self.height_mm is not None:
            return self.width_mm, self.height_mm
        width, height = self.pixel_size
        return width / self.dpi * MM_PER_INCH, height / self.dpi * MM_PER_INCH

    def to_ratio(self, value: float, unit: Unit) -> float:
        """A length along the photo's height, in ``unit``, as a fraction of that height."""
        if unit is Unit.RATIO:
            return value
        if unit is Unit.PX:
            return value / self.pixel_size[1]
        height_mm = self.print_size_mm[1]
        return value * (MM_PER_INCH if unit is Unit.INCH else 1.0) / height_mm

    def rules(self, measure: Measure) -> tuple[Rule, ...]:
        return getattr(self, measure.value)

    def bounds(self, measure: Measure) -> Bounds | None:
        """The allowed range of a measure, as ratios of the height: the intersection of its rules."""
        rules = self.rules(measure)
        if not rules:
            return None
        lows = [self.to_ratio(r.min, r.unit) for r in rules if r.min is not None]
        highs = [self.to_ratio(r.max, r.unit) for r in rules if r.max is not None]
        return Bounds(min=max(lows) if lows else None, max=min(highs) if highs else None)

    def basis(self, measure: Measure) -> Basis | None:
        """Official if any rule of the measure is; None where the spec has no rule for it."""
        rules = self.rules(measure)
        if not rules:
            return None
        return Basis.OFFICIAL if any(r.basis is Basis.OFFICIAL for r in rules) else Basis.CONVENTION

    def sources(self, measure: Measure) -> list[str]:
        return [r.source for r in self.rules(measure)]


class Catalogue(_Strict):
    colours: dict[str, Colour]
    spec: tuple[IdSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Catalogue:
        ids = [s.id for s in self.spec]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate spec ids: {duplicates}")
        if CUSTOM_SPEC_ID in ids:
            raise ValueError(f"the spec id {CUSTOM_SPEC_ID!r} is reserved for custom specs")
        for spec in self.spec:
            unknown = [name for name in spec.backgrounds if name not in self.colours]
            if unknown:
                raise ValueError(f"spec {spec.id} names unknown colours {unknown}")
        return self

    def get(self, spec_id: str) -> IdSpec:
        key = spec_id.strip().lower() if isinstance(spec_id, str) else spec_id
        for spec in self.spec:
            if spec.id == key:
                return spec
        raise UnknownSpec(f"unknown ID-photo spec {spec_id!r}; known: {', '.join(s.id for s in self.spec)}")


def parse_catalogue(text: str) -> Catalogue:
    """Validate a catalogue from TOML text (the format of ``id_specs.toml``)."""
    try:
        return Catalogue.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise InvalidSpec(f"the ID-photo spec catalogue is invalid: {exc}") from exc


@functools.cache
def catalogue() -> Catalogue:
    """The built-in catalogue, loaded and validated once."""
    text = resources.files("common").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    return parse_catalogue(text)


def list_specs() -> list[IdSpec]:
    return list(catalogue().spec)


def get_spec(spec_id: str) -> IdSpec:
    """The catalogue's spec of this id (case-insensitive); ``UnknownSpec`` if there is none."""
    return catalogue().get(spec_id)


def get_specs(spec_ids: str | Iterable[str]) -> list[IdSpec]:
    """Several specs for one photo, from ``"cn-1inch,us-visa"`` or a list of ids; duplicates dropped."""
    items = spec_ids.split(",") if isinstance(spec_ids, str) else list(spec_ids)
    names = [name.strip().lower() for name in items if name.strip()]
    if not names:
        raise UnknownSpec("no ID-photo spec was given")
    return [get_spec(name) for name in dict.fromkeys(names)]


def colour_names() -> dict[str, tuple[int, int, int]]:
    """Every named colour a spec may allow, with Backdrop's presets, as RGB."""
    named = {name: colour.rgb for name, colour in catalogue().colours.items()}
    return {**PRESETS, **named}


_RANGE = tuple[float, float]


# A single custom value v is read as the range v ± this (ratio of the height): rounding to whole pixels
# would otherwise fail an exact target.
CUSTOM_VALUE_TOLERANCE = 0.02


def _ratio_rule(value: float | _RANGE | None, what: str) -> tuple[Rule, ...]:
    if value is None:
        return ()
    if isinstance(value, int | float):
        low, high = max(0.0, value - CUSTOM_VALUE_TOLERANCE), value + CUSTOM_VALUE_TOLERANCE
    else:
        low, high = value
    return (Rule(min=low, max=high, unit=Unit.RATIO, source=f"custom {what} given by the user"),)


def custom_spec(
    *,
    width_mm: float | None = None,
    height_mm: float | None = None,
    dpi: float = DEFAULT_DPI,
    width_px: int | None = None,
    height_px: int | None = None,
    head_ratio: float | _RANGE = (0.70, 0.80),
    crown_margin: float | _RANGE | None = None,
    eye_line: float | _RANGE | None = None,
    backgrounds: Sequence[str] = (),
    max_kb: float | None = None,
    min_kb: float | None = None,
    name: str = "Custom ID photo",
) -> IdSpec:
    """A spec from the user's numbers: mm + DPI or pixels, head height ratio and crown margin (ratios of
    the height; a (min, max) range, or a single value read as value ± ``CUSTOM_VALUE_TOLERANCE``).
    Impossible numbers raise ``InvalidSpec``."""
    try:
        file = None
        if max_kb is not None or min_kb is not None:
            file = FileRules(max_kb=max_kb, min_kb=min_kb, source="custom file size given by the user")
        return IdSpec(
            id=CUSTOM_SPEC_ID,
            name_en=name,
            width_mm=width_mm,
            height_mm=height_mm,
            dpi=dpi,
            width_px=width_px,
            height_px=height_px,
            size_source="custom size given by the user",
            backgrounds=tuple(backgrounds),
            head_height=_ratio_rule(head_ratio, "head height"),
            crown_margin=_ratio_rule(crown_margin, "crown margin"),
            eye_line=_ratio_rule(eye_line, "eye line"),
            file=file,
        )
    except ValidationError as exc:
        raise InvalidSpec(f"invalid custom ID-photo spec: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ()))
    message = re.sub(r"^Value error, ", "", error.get("msg", str(exc)))
    return f"{where}: {message}" if where else message
