"""Finishing on the device in batches: concurrent jobs' photos of one size, with the same options and
background, are post-processed in one ``DevicePipeline.render_batch`` call.

Run by a ``Batcher`` of the worker service (``finishing_key`` groups the work) on its one thread, which
does the device work only: each job encodes its own photo in its own thread (``FinishedPhoto.result``),
so the host encoders (PNG, WebP, JPEG without nvJPEG) of a batch, or of photos of different sizes, run
side by side instead of one after another. Out of device memory, or any other error of the batch, its
photos are post-processed one by one with ``DevicePipeline.render`` (which itself falls back to the
CPU), so one bad photo fails only its own job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from common.backgrounds import BackgroundKind, BackgroundSpec
from common.options import JobOptions
from common.pipeline import RenderedOutputs
from worker.device_pipeline import DevicePhoto, DevicePipeline, RenderedPhoto

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FinishingWork:
    """One job's photo on the device, its network matte, and what to make of them."""

    photo: DevicePhoto
    small_matte: torch.Tensor
    options: JobOptions
    background: BackgroundSpec


@dataclass(frozen=True)
class FinishedPhoto:
    """A photo post-processed and ready to encode, or the error that post-processing it raised, with
    the seconds of the stages ("composite") of the call that did it."""

    rendered: RenderedPhoto | None
    error: Exception | None = None
    stages: dict[str, float] = field(default_factory=dict)

    def result(self) -> RenderedOutputs:
        """The photo's outputs, encoded now, in the caller's thread."""
        if self.error is not None:
            raise self.error
        assert self.rendered is not None
        return self.rendered.encode()


class StageClock:
    """A stage timer (``common.pipeline.StageTimer``) that records the seconds of each stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def background_key(background: BackgroundSpec) -> Hashable:
    """What makes two backgrounds render alike. An uploaded image is its job's own: ``BackgroundSpec``
    leaves the image out of ``==``, so it gets a key equal to nothing else and finishes alone."""
    if background.kind is BackgroundKind.IMAGE or background.image is not None:
        return object()
    return (background.kind.value, background.color)


def finishing_key(work: FinishingWork) -> Hashable:
    """Photos share a batch when they have one size, the same options and the same background.
    ``JobOptions`` holds lists (it does not hash): its canonical JSON stands for its values."""
    image = work.photo.image
    return (image.height, image.width, work.options.model_dump_json(), background_key(work.background))


def finish_together(pipeline: DevicePipeline, works: Sequence[FinishingWork]) -> list[FinishedPhoto]:
    """Post-process works of one ``finishing_key`` in one batch; one by one when the batch fails."""
    if not works:
        return []
    first = works[0]
    if len(works) == 1:
        return [finish_alone(pipeline, first)]
    clock = StageClock()
    try:
        rendered = pipeline.render_batch(
            [work.photo for work in works],
            [work.small_matte for work in works],
            first.options,
            first.background,
            timer=clock,
        )
    except torch.OutOfMemoryError:
        log.warning("%s out of memory finishing %d photos together; finishing each alone", pipeline.device, len(works))
        if pipeline.device.type == "cuda":
            torch.cuda.empty_cache()
    except Exception:
        log.warning("finishing %d photos together failed; finishing each alone", len(works), exc_info=True)
    else:
        return [FinishedPhoto(one, stages=clock.seconds) for one in rendered]
    return [finish_alone(pipeline, work) for work in works]


def finish_alone(pipeline: DevicePipeline, work: FinishingWork) -> FinishedPhoto:
    """One photo through ``DevicePipeline.render`` (the CPU when the device is out of memory)."""
    clock = StageClock()
    try:
        rendered = pipeline.render(work.photo, work.small_matte, work.options, work.background, timer=clock)
    except Exception as exc:
        return FinishedPhoto(None, exc, clock.seconds)
    return FinishedPhoto(rendered, stages=clock.seconds)
