"""Photos onto and off the torch device: JPEG decode and encode with nvJPEG through ``torchvision.io``
where torchvision imports and the device is CUDA, else the host codec of ``common/imaging`` with the
pixels copied from pinned host memory.

torchvision is optional (PyPI's build does not import beside the CPU build of torch), so whether nvJPEG
is used is detected once, when the codec is made. nvJPEG decodes only plain JPEGs: colour (YCbCr), no ICC
profile, upright; every other photo (CMYK, ICC, EXIF-rotated, PNG, WebP, ...) takes the host decoder,
which converts it exactly as the CPU path does.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from common.imaging import DecodedImage, encode_image, exif_orientation, probe_image, read_dpi
from common.pipeline import decode
from common.settings import Settings

log = logging.getLogger(__name__)

JFIF_DPI_UNITS = 1  # density in dots per inch


@dataclass(frozen=True, eq=False)
class DeviceImage:
    """An upright sRGB photo on the device, its source transparency and its resolution metadata."""

    rgb: torch.Tensor  # (3, H, W) uint8
    alpha: torch.Tensor | None  # (1, H, W) float32 in [0, 1], or None when the source was opaque
    dpi: tuple[float, float] | None
    source_format: str

    @property
    def height(self) -> int:
        return int(self.rgb.shape[-2])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[-1])


def torchvision_io() -> ModuleType | None:
    """``torchvision.io`` when torchvision imports beside this torch and has the JPEG codec, else None."""
    try:
        import torchvision.io as tvio
    except Exception as exc:  # ImportError, or a build made for another torch failing as it loads
        log.debug("torchvision does not import: %s", exc)
        return None
    return tvio if hasattr(tvio, "decode_jpeg") and hasattr(tvio, "encode_jpeg") else None


def upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` on ``device``: through pinned (page-locked) host memory to a CUDA device, so the copy is
    one asynchronous DMA; on the CPU the array's own memory."""
    contiguous = np.ascontiguousarray(array)
    tensor = torch.from_numpy(contiguous if contiguous.flags.writeable else contiguous.copy())
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def download(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) on any device -> contiguous (H, W, C) on the host."""
    return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())


def plain_jpeg_dpi(data: bytes) -> tuple[bool, tuple[float, float] | None]:
    """Whether ``data`` is a JPEG that a plain decoder renders as the host path does (colour, no ICC
    profile, upright), and the resolution it states. Reads the header only."""
    with Image.open(io.BytesIO(data)) as im:
        plain = (
            im.format == "JPEG" and im.mode == "RGB" and not im.info.get("icc_profile") and exif_orientation(im) == 1
        )
        return plain, read_dpi(im)


def with_jfif_density(jpeg: bytes, dpi: tuple[float, float] | None) -> bytes:
    """``jpeg`` stating ``dpi`` in its JFIF header (whole dots per inch, as Pillow writes them): the APP0
    segment's density rewritten, or a JFIF APP0 segment inserted after the start-of-image marker."""
    if dpi is None:
        return jpeg
    x, y = (max(1, min(0xFFFF, round(value))) for value in dpi)
    density = struct.pack(">BHH", JFIF_DPI_UNITS, x, y)
    if jpeg[2:4] == b"\xff\xe0" and jpeg[6:11] == b"JFIF\x00":
        return jpeg[:13] + density + jpeg[18:]
    segment = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01" + density + b"\x00\x00"
    return jpeg[:2] + segment + jpeg[2:]


class DeviceCodec:
    """Decodes photos onto one device and encodes JPEGs from it; nvJPEG when detected, else the host."""

    def __init__(self, device: torch.device, *, tvio: ModuleType | None = None, detect: bool = True) -> None:
        self.device = device
        if tvio is None and detect and device.type == "cuda":
            tvio = torchvision_io()
        self._tvio = tvio if device.type == "cuda" else None

    @property
    def uses_nvjpeg(self) -> bool:
        return self._tvio is not None

    def describe(self) -> str:
        return "nvJPEG (torchvision)" if self.uses_nvjpeg else "Pillow and OpenCV on the host"

    def decode(self, data: bytes, settings: Settings) -> DeviceImage:
        """The photo on the device, within the configured limits (the host decoder's errors for
        anything wrong with it)."""
        if self._tvio is not None:
            probe_image(data, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
            plain, dpi = plain_jpeg_dpi(data)
            if plain:
                encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                try:
                    rgb = self._tvio.decode_jpeg(encoded, mode=self._tvio.ImageReadMode.RGB, device=self.device)
                except RuntimeError:
                    log.debug("nvJPEG refused a JPEG; decoding it on the host", exc_info=True)
                else:
                    return DeviceImage(rgb, None, dpi, "JPEG")
        return self.from_decoded(decode(data, settings))

    def from_decoded(self, decoded: DecodedImage) -> DeviceImage:
        """A photo decoded on the host, copied to the device."""
        rgb = upload(decoded.rgb, self.device).permute(2, 0, 1)
        alpha = None if decoded.alpha is None else upload(decoded.alpha, self.device).unsqueeze(0)
        return DeviceImage(rgb, alpha, decoded.dpi, decoded.source_format)

    def encode_jpeg(self, rgb: torch.Tensor, *, quality: int, dpi: tuple[float, float] | None) -> bytes:
        """JPEG bytes of a (3, H, W) uint8 image: nvJPEG on the device, or the host encoder."""
        if self._tvio is not None and rgb.device.type == "cuda":
            encoded = self._tvio.encode_jpeg(rgb.contiguous(), quality=quality)
            return with_jfif_density(encoded.cpu().numpy().tobytes(), dpi)
        return encode_image(download(rgb), "jpeg", quality=quality, dpi=dpi)
