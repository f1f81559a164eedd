"""The photo pipeline of a CUDA worker, on the device from decode to encode.

decode (nvJPEG, or the host decoder and a pinned copy) -> network input resize -> MODNet (the engine's
precision, fp16 only where the self-check passed; CUDA graphs for the shape buckets) -> matte at full
resolution -> foreground, background, composite -> encode (nvJPEG for JPEG; the host encoders for PNG
and WebP). The same steps as ``common.pipeline`` (``prepare``, ``finish``), in torch; the worker uses it
when its engine is torch on CUDA and ``BACKDROP_GPU_PIPELINE`` is on, and ID-photo jobs keep the CPU
path. Runs on any torch device, so it is tested on the CPU.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from common.backgrounds import BackgroundKind, BackgroundSpec
from common.imaging import encode_image, encode_matte_png, encode_rgba_png
from common.options import JobOptions, OutputFormat, OutputKind
from common.pipeline import RenderedOutput, RenderedOutputs, StageTimer, network_input_shape, untimed
from common.settings import Settings
from common.sizing import bucket_sizes
from worker.cuda_graphs import GraphedForward
from worker.device_images import DeviceCodec, DeviceImage, download
from worker.engines.base import check_sides
from worker.engines.torch_engine import TorchEngine, normalization_table
from worker.runtime import ModelRunner
from worker.torch_postprocess.backgrounds import render_background
from worker.torch_postprocess.compositing import composite, cutout, estimate_foreground, to_unit
from worker.torch_postprocess.resize import network_input_tensor, resize_linear

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DevicePhoto:
    """A photo on the device and the network input made from it."""

    image: DeviceImage
    network_input: torch.Tensor  # (3, rh, rw) uint8


class DevicePipeline:
    """Decode, network and post-processing of photos on one torch device, for one torch engine."""

    def __init__(self, engine: TorchEngine, settings: Settings, *, codec: DeviceCodec | None = None) -> None:
        self.engine = engine
        self.device = engine.torch_device
        self.settings = settings
        self.codec = codec or DeviceCodec(self.device)
        self._table = normalization_table(self.device)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = engine.forward
        if settings.cuda_graphs and self.device.type == "cuda":
            shapes = bucket_sizes(ref_size=settings.inference_ref_size, max_side=settings.inference_max_side)
            self.forward = GraphedForward(engine, shapes, settings.max_batch_size)

    @classmethod
    def for_runner(cls, runner: ModelRunner, settings: Settings) -> DevicePipeline | None:
        """The pipeline a worker runs its photos through: on a CUDA torch engine unless turned off; None
        (the CPU path) everywhere else."""
        engine = runner.engine
        if not settings.gpu_pipeline or not isinstance(engine, TorchEngine) or engine.torch_device.type != "cuda":
            return None
        pipeline = cls(engine, settings)
        graphs = "eager"
        if isinstance(pipeline.forward, GraphedForward):
            graphs = f"{pipeline.forward.capture_all()} CUDA graphs for the shape buckets, other shapes eager"
        log.info(
            "GPU pipeline on %s: %s, JPEG codec %s, MODNet %s",
            pipeline.device,
            engine.precision.value,
            pipeline.codec.describe(),
            graphs,
        )
        return pipeline

    def prepare(self, data: bytes) -> DevicePhoto:
        """Decode onto the device and make the network input (``common.pipeline.prepare``)."""
        image = self.codec.decode(data, self.settings)
        size = network_input_shape(image.height, image.width, self.settings)
        return DevicePhoto(image, network_input_tensor(image.rgb.unsqueeze(0), size)[0])

    def predict(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Same-shape (3, rh, rw) uint8 network inputs -> (rh, rw) float32 mattes, in one pass."""
        if not inputs:
            return []
        batch = torch.stack(list(inputs)).to(self.device)
        check_sides(batch.shape[-2], batch.shape[-1])
        mattes = self.forward(self._table[batch.long()])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the pass has ended when this returns, as on the CPU
        return list(mattes[:, 0])

    def replace_photo(
        self, data: bytes, options: JobOptions, background: BackgroundSpec | None = None
    ) -> RenderedOutputs:
        """One photo end to end on the device (``common.pipeline.replace_photo``)."""
        photo = self.prepare(data)
        (matte,) = self.predict([photo.network_input])
        return self.finish(photo, matte, options, background)

    def render(
        self,
        photo: DevicePhoto,
        small_matte: torch.Tensor,
        options: JobOptions,
        background: BackgroundSpec | None = None,
        *,
        timer: StageTimer = untimed,
    ) -> RenderedPhoto:
        """One photo's post-processed pixels from its network matte, not yet encoded. A photo whose
        post-processing does not fit in the device's free memory (a large one among many jobs in
        flight) is post-processed by the same code on the CPU instead of failing its job."""
        try:
            return self.render_batch([photo], [small_matte], options, background, timer=timer)[0]
        except torch.OutOfMemoryError:
            log.warning(
                "%s out of memory for a %dx%d photo's post-processing; finishing it on the CPU",
                self.device,
                photo.image.width,
                photo.image.height,
            )
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        image = photo.image
        alpha = None if image.alpha is None else image.alpha.cpu()
        on_host = DevicePhoto(
            DeviceImage(image.rgb.cpu(), alpha, image.dpi, image.source_format), photo.network_input.cpu()
        )
        return self.render_batch([on_host], [small_matte.cpu()], options, background, timer=timer)[0]

    def finish(
        self,
        photo: DevicePhoto,
        small_matte: torch.Tensor,
        options: JobOptions,
        background: BackgroundSpec | None = None,
        *,
        timer: StageTimer = untimed,
    ) -> RenderedOutputs:
        """The outputs of one photo from its network matte (``common.pipeline.finish``), on the CPU
        when the device has no room for it."""
        rendered = self.render(photo, small_matte, options, background, timer=timer)
        with timer("encode"):
            return rendered.encode()

    def render_batch(
        self,
        photos: Sequence[DevicePhoto],
        small_mattes: Sequence[torch.Tensor],
        options: JobOptions,
        background: BackgroundSpec | None = None,
        *,
        timer: StageTimer = untimed,
    ) -> list[RenderedPhoto]:
        """Same-size photos with the same options post-processed as one batch, each left to be encoded
        (by its own job's thread, so that host encodes of a batch run side by side)."""
        sizes = {(photo.image.height, photo.image.width) for photo in photos}
        if len(sizes) != 1 or len(photos) != len(small_mattes):
            raise ValueError(f"a batch needs one matte per photo and one photo size, got {sorted(sizes)}")
        (size,) = sizes
        background = background or options.background_spec()
        kinds = options.output_kinds
        transparent = background.kind is BackgroundKind.TRANSPARENT
        with timer("composite"):
            image = to_unit(torch.stack([photo.image.rgb for photo in photos]))
            alpha = self._full_resolution_mattes(photos, small_mattes, size)
            foreground = estimate_foreground(image, alpha) if options.decontaminate else image
            wants_rgba = OutputKind.CUTOUT in kinds or (transparent and OutputKind.COMPOSITE in kinds)
            rgba = cutout(foreground, alpha) if wants_rgba else None
            result = None
            if OutputKind.COMPOSITE in kinds and not transparent:
                result = composite(foreground, alpha, render_background(background, image, alpha))
        return [
            RenderedPhoto(
                self.codec,
                photo.image,
                options,
                alpha[index],
                None if rgba is None else rgba[index],
                None if result is None else result[index],
            )
            for index, photo in enumerate(photos)
        ]

    def _full_resolution_mattes(
        self, photos: Sequence[DevicePhoto], small_mattes: Sequence[torch.Tensor], size: tuple[int, int]
    ) -> torch.Tensor:
        """(B, 1, H, W) mattes at the photos' size (bilinear), limited by their own transparency."""
        alpha = resize_linear(torch.stack(list(small_mattes)).unsqueeze(1).float(), size).clamp(0.0, 1.0)
        for index, photo in enumerate(photos):
            if photo.image.alpha is not None:
                alpha[index] *= photo.image.alpha
        return alpha


@dataclass(frozen=True, eq=False)
class RenderedPhoto:
    """A photo's post-processed pixels, on the device (or on the host after a fallback), to be encoded
    into the outputs its options ask for."""

    codec: DeviceCodec
    image: DeviceImage
    options: JobOptions
    alpha: torch.Tensor  # (1, H, W) float32 in [0, 1]
    rgba: torch.Tensor | None  # (4, H, W): the cutout, when one is wanted
    result: torch.Tensor | None  # (3, H, W) uint8: the composite on an opaque background

    def encode(self) -> RenderedOutputs:
        options, image = self.options, self.image
        kinds, dpi = options.output_kinds, image.dpi
        items: dict[OutputKind, RenderedOutput] = {}

        def add(kind: OutputKind, data: bytes, fmt: OutputFormat) -> None:
            items[kind] = RenderedOutput(kind, data, fmt, image.width, image.height)

        # On a transparent background the composite is the cutout: one PNG encode serves both.
        rgba_png = functools.cache(lambda: encode_rgba_png(download(self.rgba), dpi=dpi))
        if OutputKind.COMPOSITE in kinds:
            fmt = options.composite_format
            if self.result is None:
                assert self.rgba is not None
                add(OutputKind.COMPOSITE, rgba_png(), fmt)
            elif fmt is OutputFormat.JPEG:
                add(OutputKind.COMPOSITE, self._jpeg(self.result), fmt)
            else:
                add(
                    OutputKind.COMPOSITE,
                    encode_image(download(self.result), fmt.value, quality=options.quality, dpi=dpi),
                    fmt,
                )
        if OutputKind.CUTOUT in kinds and self.rgba is not None:
            add(OutputKind.CUTOUT, rgba_png(), OutputFormat.PNG)
        if OutputKind.MATTE in kinds:
            add(OutputKind.MATTE, encode_matte_png(self.alpha[0].cpu().numpy(), dpi=dpi), OutputFormat.PNG)
        return RenderedOutputs(items)

    def _jpeg(self, rgb: torch.Tensor) -> bytes:
        """nvJPEG where the codec has it; the host encoder when the device has no room left for it."""
        quality, dpi = self.options.quality, self.image.dpi
        try:
            return self.codec.encode_jpeg(rgb, quality=quality, dpi=dpi)
        except torch.OutOfMemoryError:
            log.warning("%s out of memory encoding a JPEG; encoding it on the host", rgb.device)
            return encode_image(download(rgb), "jpeg", quality=quality, dpi=dpi)
