"""Finishing photos together: a failed batch falls back to one photo at a time, so one bad photo fails
only its own job; an uploaded background image never shares a batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from common.backgrounds import BackgroundKind, BackgroundSpec
from common.options import JobOptions
from common.pipeline import RenderedOutputs
from worker.device_finishing import FinishingWork, finish_together, finishing_key
from worker.device_images import DeviceImage
from worker.device_pipeline import DevicePhoto


class BatchFailsPipeline:
    """A stand-in for ``DevicePipeline``: its batch call fails; alone, the photo marked bad fails."""

    device = torch.device("cpu")

    def __init__(self, bad: DevicePhoto) -> None:
        self.bad = bad
        self.batches = 0
        self.alone: list[DevicePhoto] = []

    def render_batch(self, photos: Any, mattes: Any, options: Any, background: Any, *, timer: Any) -> Any:
        self.batches += 1
        raise ValueError("one photo of the batch is bad")

    def render(self, photo: DevicePhoto, matte: Any, options: Any, background: Any, *, timer: Any) -> Any:
        self.alone.append(photo)
        if photo is self.bad:
            raise ValueError("this photo is bad")
        return Rendered()


class Rendered:
    """A stand-in for ``RenderedPhoto``: encodes to no outputs."""

    def encode(self) -> RenderedOutputs:
        return RenderedOutputs({})


def work(options: JobOptions | None = None, background: BackgroundSpec | None = None) -> FinishingWork:
    image = DeviceImage(torch.zeros(3, 8, 6, dtype=torch.uint8), None, None, "jpeg")
    photo = DevicePhoto(image, torch.zeros(3, 8, 6, dtype=torch.uint8))
    options = options or JobOptions()
    return FinishingWork(photo, torch.zeros(8, 6), options, background or options.background_spec())


def test_a_failed_batch_is_finished_photo_by_photo_and_only_the_bad_photo_fails() -> None:
    works = [work(), work(), work()]
    pipeline = BatchFailsPipeline(bad=works[1].photo)
    finished = finish_together(pipeline, works)  # type: ignore[arg-type]
    assert pipeline.batches == 1 and pipeline.alone == [w.photo for w in works]
    assert isinstance(finished[0].result(), RenderedOutputs) and isinstance(finished[2].result(), RenderedOutputs)
    with pytest.raises(ValueError, match="this photo is bad"):
        finished[1].result()


def test_same_size_options_and_colour_share_a_key_and_others_do_not() -> None:
    assert finishing_key(work()) == finishing_key(work())
    assert finishing_key(work()) != finishing_key(work(JobOptions(background="red")))
    image = np.zeros((8, 6, 3), dtype=np.uint8)
    uploaded = BackgroundSpec(BackgroundKind.IMAGE, image=image)
    # Equal as BackgroundSpecs (the image takes no part in ==), yet two uploads never share a batch.
    assert uploaded == BackgroundSpec(BackgroundKind.IMAGE, image=image + 1)
    assert finishing_key(work(background=uploaded)) != finishing_key(work(background=uploaded))
