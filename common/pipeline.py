"""The torch-free steps around the network: what to feed it, and what to make of its matte.

decode -> ``network_input`` -> (worker: MODNet) -> ``full_resolution_matte`` -> ``render_outputs``
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from common.backgrounds import BackgroundKind, BackgroundSpec, parse_background, render_background
from common.compositing import composite, cutout, estimate_foreground, to_float
from common.errors import InvalidOption
from common.imaging import DecodedImage, encode_image, encode_matte_png, encode_rgba_png
from common.settings import Settings
from common.sizing import SizeRule, network_input_size


class OutputFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"

    @classmethod
    def parse(cls, value: str) -> OutputFormat:
        name = value.strip().lower()
        name = "jpeg" if name == "jpg" else name
        try:
            return cls(name)
        except ValueError:
            accepted = ", ".join(f.value for f in cls)
            raise InvalidOption(f"unknown output format {value!r}; accepted: {accepted}") from None


def file_extension(fmt: str) -> str:
    """The file name extension of an output format ("jpeg" files are named .jpg)."""
    return "jpg" if fmt == OutputFormat.JPEG else fmt


class OutputKind(StrEnum):
    COMPOSITE = "composite"  # the photo on its new background
    CUTOUT = "cutout"  # RGBA PNG: the person on transparency
    MATTE = "matte"  # 8-bit grayscale PNG of the alpha matte


@dataclass(frozen=True)
class ReplaceOptions:
    """What a user asks for. ``format`` None means JPEG, or PNG for a transparent background."""

    background: BackgroundSpec
    format: OutputFormat | None = None
    quality: int = 92
    outputs: frozenset[OutputKind] = frozenset({OutputKind.COMPOSITE})
    decontaminate: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise InvalidOption(f"quality must be between 1 and 100, got {self.quality}")
        if not self.outputs:
            raise InvalidOption("ask for at least one output: composite, cutout or matte")
        transparent = self.background.kind is BackgroundKind.TRANSPARENT
        if transparent and self.format not in (None, OutputFormat.PNG):
            raise InvalidOption(f"a transparent background needs PNG output, not {self.format.value}")

    @classmethod
    def from_values(
        cls,
        *,
        background: str,
        format: str | None = None,
        quality: int = 92,
        outputs: Iterable[str] = ("composite",),
        decontaminate: bool = True,
        background_image: np.ndarray | None = None,
    ) -> ReplaceOptions:
        """Options from plain values (a form, a job record, the command line); InvalidOption if wrong."""
        kinds: set[OutputKind] = set()
        for name in outputs:
            try:
                kinds.add(OutputKind(name.strip().lower()))
            except ValueError:
                accepted = ", ".join(k.value for k in OutputKind)
                raise InvalidOption(f"unknown output {name!r}; accepted: {accepted}") from None
        return cls(
            background=parse_background(background, image=background_image),
            format=OutputFormat.parse(format) if format else None,
            quality=quality,
            outputs=frozenset(kinds),
            decontaminate=decontaminate,
        )

    @property
    def composite_format(self) -> OutputFormat:
        if self.format is not None:
            return self.format
        return OutputFormat.PNG if self.background.kind is BackgroundKind.TRANSPARENT else OutputFormat.JPEG


@dataclass(frozen=True)
class RenderedOutput:
    kind: OutputKind
    data: bytes
    format: OutputFormat
    width: int
    height: int


@dataclass(frozen=True)
class RenderedOutputs:
    items: dict[OutputKind, RenderedOutput] = field(default_factory=dict)

    def __getitem__(self, kind: OutputKind) -> RenderedOutput:
        return self.items[kind]


def network_input_shape(
    height: int, width: int, settings: Settings, rule: SizeRule = SizeRule.ASPECT
) -> tuple[int, int]:
    return network_input_size(
        height, width, rule, ref_size=settings.inference_ref_size, max_side=settings.inference_max_side
    )


def network_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resized to ``size`` = (rh, rw): area averaging when shrinking, bilinear when enlarging."""
    rh, rw = size
    height, width = rgb.shape[:2]
    if (height, width) == (rh, rw):
        return np.ascontiguousarray(rgb)
    shrinking = rh * rw < height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (rw, rh), interpolation=interpolation)


def full_resolution_matte(matte: np.ndarray, decoded: DecodedImage) -> np.ndarray:
    """The network's matte brought back to the photo's own size (bilinear, smooth edges), limited
    by the source's own transparency when it had one. (H,W) float32 in [0,1]."""
    height, width = decoded.height, decoded.width
    if matte.shape != (height, width):
        matte = cv2.resize(matte.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    matte = np.clip(matte, 0.0, 1.0, dtype=np.float32)
    if decoded.alpha is not None:
        matte *= decoded.alpha
    return matte


def render_outputs(decoded: DecodedImage, matte: np.ndarray, options: ReplaceOptions) -> RenderedOutputs:
    """Composite, cutout and matte at full resolution, encoded as asked."""
    height, width = decoded.height, decoded.width
    image = to_float(decoded.rgb)
    foreground = estimate_foreground(image, matte) if options.decontaminate else image
    items: dict[OutputKind, RenderedOutput] = {}

    def add(kind: OutputKind, data: bytes, fmt: OutputFormat) -> None:
        items[kind] = RenderedOutput(kind, data, fmt, width, height)

    rgba: np.ndarray | None = None
    if OutputKind.COMPOSITE in options.outputs:
        fmt = options.composite_format
        if options.background.kind is BackgroundKind.TRANSPARENT:
            rgba = cutout(foreground, matte)
            add(OutputKind.COMPOSITE, encode_rgba_png(rgba, dpi=decoded.dpi), fmt)
        else:
            background = render_background(options.background, size=(width, height), original=decoded.rgb, alpha=matte)
            result = composite(foreground, matte, background)
            add(
                OutputKind.COMPOSITE,
                encode_image(result, fmt.value, quality=options.quality, dpi=decoded.dpi),
                fmt,
            )
    if OutputKind.CUTOUT in options.outputs:
        rgba = cutout(foreground, matte) if rgba is None else rgba
        add(OutputKind.CUTOUT, encode_rgba_png(rgba, dpi=decoded.dpi), OutputFormat.PNG)
    if OutputKind.MATTE in options.outputs:
        add(OutputKind.MATTE, encode_matte_png(matte, dpi=decoded.dpi), OutputFormat.PNG)
    return RenderedOutputs(items)
