"""One photo pipeline, torch-free: ``prepare`` makes the network input, ``finish`` makes the outputs.

decode -> network input (``prepare``) -> MODNet (the worker's runner, directly or through its
batcher) -> full-resolution matte -> composite, cutout, matte (``finish``), or for an ID-photo job
the faces and each spec's photo, report and sheet (``finish_id_photos``). The command line drives it
directly (``replace_photo``, ``id_photos``); the worker drives the same halves around its batcher.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import BinaryIO

import cv2
import numpy as np

from common.backgrounds import BackgroundKind, BackgroundSpec, background_rows
from common.compositing import compose
from common.faces import Face
from common.id_photo import IdPhotoResult, make_id_photos, matte_from_alpha
from common.imaging import (
    OUTPUT_MEDIA_TYPES,
    DecodedImage,
    decode_image,
    encode_image,
    encode_matte_png,
    encode_rgba_png,
    probe_image,
)
from common.options import JobOptions, OutputFormat, OutputKind, file_extension
from common.settings import Settings
from common.sizing import SizeRule, bucketed_inference_size, network_input_size

PhotoSource = bytes | str | os.PathLike[str] | BinaryIO
# Mattes of a list of network inputs: the worker's ``ModelRunner.predict`` or its batcher.
Predict = Callable[[Sequence[np.ndarray]], list[np.ndarray]]
# The faces in an (H, W, 3) uint8 photo: the worker's face detector.
DetectFaces = Callable[[np.ndarray], list[Face]]
REPORT_MEDIA_TYPE = "application/json"
# Peak memory of one photo's decode and post-processing above what the process held before it, per pixel
# of the photo: measured by bench/bench_memory.py in its heaviest case (blur background, composite,
# cut-out and matte) at up to 50 Mpx, with a margin (bench/RESULTS.md). The network's part does not
# grow with the photo (its input is capped), so it is in the fixed part.
PEAK_BYTES_PER_PIXEL = 40
PEAK_BYTES_FIXED = 64 * 2**20
# A background image is decoded whole (Pillow's copy and ours) before it is scaled to the photo.
BACKGROUND_BYTES_PER_PIXEL = 8
# Times a named stage of the pipeline ("composite", "encode"): the worker's metrics, or nothing.
StageTimer = Callable[[str], AbstractContextManager[object]]


def untimed(_stage: str) -> AbstractContextManager[object]:
    return nullcontext()


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


@dataclass(frozen=True)
class PreparedPhoto:
    """A decoded photo and the network input made from it."""

    decoded: DecodedImage
    network_input: np.ndarray  # (rh, rw, 3) uint8


@dataclass(frozen=True)
class PhotoResult:
    decoded: DecodedImage
    matte: np.ndarray  # (H,W) float32 at the photo's resolution
    outputs: RenderedOutputs


def decode(source: PhotoSource, settings: Settings) -> DecodedImage:
    """A photo decoded within the configured pixel and side limits."""
    return decode_image(source, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)


def pixel_count(data: bytes, settings: Settings) -> int:
    """The pixels of an encoded photo, read from its header alone, with the limits ``decode`` applies
    (an image it would refuse raises the same error here)."""
    info = probe_image(data, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    return info.width * info.height


def job_peak_bytes(photo_pixels: int, background_pixels: int = 0) -> int:
    """The estimated peak memory of one photo's job from its pixel count (and its background image's)."""
    return PEAK_BYTES_FIXED + PEAK_BYTES_PER_PIXEL * photo_pixels + BACKGROUND_BYTES_PER_PIXEL * background_pixels


def network_input_shape(
    height: int, width: int, settings: Settings, rule: SizeRule = SizeRule.ASPECT
) -> tuple[int, int]:
    """The network input size of a photo: its aspect-ratio bucket with ``BACKDROP_SHAPE_BUCKETS=resize``
    (the photo is then resized into it), else the rule's own size."""
    if rule is SizeRule.ASPECT and settings.shape_buckets == "resize":
        return bucketed_inference_size(
            height, width, ref_size=settings.inference_ref_size, max_side=settings.inference_max_side
        )
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


def prepare(source: PhotoSource | DecodedImage, settings: Settings) -> PreparedPhoto:
    """The first half: decode (unless already decoded) and make the network input."""
    decoded = source if isinstance(source, DecodedImage) else decode(source, settings)
    size = network_input_shape(decoded.height, decoded.width, settings)
    return PreparedPhoto(decoded, network_input(decoded.rgb, size))


def full_resolution_matte(matte: np.ndarray, decoded: DecodedImage) -> np.ndarray:
    """The network's matte brought back to the photo's own size (bilinear, smooth edges), limited
    by the source's own transparency when it had one. (H,W) float32 in [0,1]."""
    height, width = decoded.height, decoded.width
    if matte.shape != (height, width):
        matte = cv2.resize(matte.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        np.clip(matte, 0.0, 1.0, out=matte)  # in place: the full-size matte is made once
    else:
        matte = np.clip(matte, 0.0, 1.0, dtype=np.float32)
    if decoded.alpha is not None:
        matte *= decoded.alpha
    return matte


def render_outputs(
    decoded: DecodedImage,
    matte: np.ndarray,
    options: JobOptions,
    background: BackgroundSpec | None = None,
    *,
    timer: StageTimer = untimed,
) -> RenderedOutputs:
    """Composite, cutout and matte at full resolution, encoded as asked. ``background`` defaults to
    the options' own (pass it for ``background=image``, with the decoded image); ``timer`` times the
    compositing and the encoding apart."""
    background = background or options.background_spec()
    height, width = decoded.height, decoded.width
    kinds = options.output_kinds
    items: dict[OutputKind, RenderedOutput] = {}

    def add(kind: OutputKind, encode: Callable[[], bytes], fmt: OutputFormat) -> None:
        with timer("encode"):
            items[kind] = RenderedOutput(kind, encode(), fmt, width, height)

    with timer("composite"):
        transparent = background.kind is BackgroundKind.TRANSPARENT
        wants_rgba = OutputKind.CUTOUT in kinds or (transparent and OutputKind.COMPOSITE in kinds)
        rows = None
        if OutputKind.COMPOSITE in kinds and not transparent:
            rows = background_rows(background, size=(width, height), original=decoded.rgb, alpha=matte)
        composed = compose(decoded.rgb, matte, background=rows, decontaminate=options.decontaminate, rgba=wants_rgba)
        rgba, result = composed.rgba, composed.composite
    # On a transparent background the composite is the cutout: one PNG encode serves both.
    rgba_png = functools.cache(lambda: encode_rgba_png(rgba, dpi=decoded.dpi))
    if OutputKind.COMPOSITE in kinds:
        fmt = options.composite_format
        if result is None:
            add(OutputKind.COMPOSITE, rgba_png, fmt)
        else:
            add(
                OutputKind.COMPOSITE,
                lambda: encode_image(result, fmt.value, quality=options.quality, dpi=decoded.dpi),
                fmt,
            )
    if OutputKind.CUTOUT in kinds:
        add(OutputKind.CUTOUT, rgba_png, OutputFormat.PNG)
    if OutputKind.MATTE in kinds:
        add(OutputKind.MATTE, lambda: encode_matte_png(matte, dpi=decoded.dpi), OutputFormat.PNG)
    return RenderedOutputs(items)


def finish(
    prepared: PreparedPhoto,
    small_matte: np.ndarray,
    options: JobOptions,
    background: BackgroundSpec | None = None,
    *,
    timer: StageTimer = untimed,
) -> PhotoResult:
    """The second half: the network's matte at full resolution, then the outputs."""
    matte = full_resolution_matte(small_matte, prepared.decoded)
    outputs = render_outputs(prepared.decoded, matte, options, background, timer=timer)
    return PhotoResult(prepared.decoded, matte, outputs)


def replace_photo(
    source: PhotoSource,
    options: JobOptions,
    predict: Predict,
    settings: Settings,
    background: BackgroundSpec | None = None,
) -> PhotoResult:
    """One photo end to end in this process: the pipeline driven directly, one forward pass."""
    prepared = prepare(source, settings)
    (small,) = predict([prepared.network_input])
    return finish(prepared, small, options, background)


def finish_id_photos(
    decoded: DecodedImage, matte: np.ndarray, faces: Sequence[Face], options: JobOptions, settings: Settings
) -> list[IdPhotoResult]:
    """The ID-photo half: each spec's photo, report and (if asked) print sheet, from the photo's
    full-resolution matte and its faces."""
    return make_id_photos(
        decoded,
        matte,
        faces,
        options.id_specs(),
        options.id_background(),
        output_format=(options.format or OutputFormat.JPEG).value,
        quality=options.quality,
        max_kb=options.max_kb,
        min_kb=options.min_kb,
        sheet=options.sheet,
        cut_guides=options.cut_guides,
        tilt_threshold=settings.id_tilt_threshold_degrees,
        max_upscale=settings.id_max_upscale,
    )


def id_photos(
    source: PhotoSource, options: JobOptions, predict: Predict, detect: DetectFaces, settings: Settings
) -> list[IdPhotoResult]:
    """One photo to its ID photos in this process (no forward pass with ``matte_source=alpha``)."""
    decoded = decode(source, settings)
    matte = id_photo_matte(decoded, options, settings, lambda network_input: predict([network_input])[0])
    return finish_id_photos(decoded, matte, detect(decoded.rgb), options, settings)


def id_photo_matte(
    decoded: DecodedImage, options: JobOptions, settings: Settings, predict_one: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The full-resolution matte of an ID photo: the photo's own alpha (``matte_source=alpha``), or the
    network's on the prepared input (``predict_one``: one forward pass, direct or through a batcher)."""
    if options.matte_source == "alpha":
        return matte_from_alpha(decoded)
    return full_resolution_matte(predict_one(prepare(decoded, settings).network_input), decoded)


@dataclass(frozen=True)
class ResultFile:
    """One output to store: its result name, bytes, file name extension, media type, format and size."""

    name: str  # "composite", or "id_photo.<spec>", "report.<spec>", "sheet.<spec>"
    data: bytes
    extension: str
    media_type: str
    format: str
    width: int | None
    height: int | None


def result_files(outputs: RenderedOutputs) -> list[ResultFile]:
    """The files of a background replacement, one per output kind."""
    return [
        ResultFile(
            kind.value,
            item.data,
            file_extension(item.format),
            OUTPUT_MEDIA_TYPES[item.format.value],
            item.format.value,
            item.width,
            item.height,
        )
        for kind, item in outputs.items.items()
    ]


def id_photo_files(results: Sequence[IdPhotoResult]) -> list[ResultFile]:
    """The files of an ID-photo job: per spec its photo, its report (JSON) and its sheet if asked for."""
    files = []
    for result in results:
        spec, report = result.spec.id, result.report
        files.append(
            ResultFile(
                f"id_photo.{spec}",
                result.photo,
                file_extension(report.format),
                result.media_type,
                report.format,
                report.width_px,
                report.height_px,
            )
        )
        report_json = report.model_dump_json(indent=2).encode()
        files.append(ResultFile(f"report.{spec}", report_json, "json", REPORT_MEDIA_TYPE, "json", None, None))
        if result.sheet is not None and result.sheet_size is not None:
            width, height = result.sheet_size
            files.append(
                ResultFile(f"sheet.{spec}", result.sheet, "jpg", OUTPUT_MEDIA_TYPES["jpeg"], "jpeg", width, height)
            )
    return files
