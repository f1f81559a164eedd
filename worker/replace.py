"""One photo end to end in this process: decode, matte, composite, encode."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from common.imaging import DecodedImage, decode_image
from common.pipeline import (
    RenderedOutputs,
    ReplaceOptions,
    full_resolution_matte,
    network_input,
    network_input_shape,
    render_outputs,
)
from common.settings import Settings
from common.sizing import SizeRule
from worker.runtime import ModelRunner


@dataclass(frozen=True)
class ReplaceResult:
    decoded: DecodedImage
    matte: np.ndarray  # (H,W) float32 at the photo's resolution
    outputs: RenderedOutputs


def decode(source: bytes | str | os.PathLike[str] | BinaryIO, settings: Settings) -> DecodedImage:
    return decode_image(source, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)


def matte_for(decoded: DecodedImage, runner: ModelRunner, settings: Settings) -> np.ndarray:
    """The full-resolution matte of one decoded photo."""
    size = network_input_shape(decoded.height, decoded.width, settings, SizeRule.ASPECT)
    (small,) = runner.predict([network_input(decoded.rgb, size)])
    return full_resolution_matte(small, decoded)


def replace_background(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    options: ReplaceOptions,
    runner: ModelRunner,
    settings: Settings,
) -> ReplaceResult:
    decoded = decode(source, settings)
    matte = matte_for(decoded, runner, settings)
    return ReplaceResult(decoded, matte, render_outputs(decoded, matte, options))
