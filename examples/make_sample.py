"""Draw ``examples/portrait.jpg``: a synthetic head-and-shoulders portrait on a plain wall.

It is a drawing made by this script, not a photo of anyone, so it may be shipped and used freely. It is
meant for trying the quick start (``curl -F image=@examples/portrait.jpg ...``); the network has not been
trained on drawings, so expect a rougher matte than on a real photo.

    python examples/make_sample.py [OUTPUT]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

SIZE = (600, 800)  # width, height: a portrait photo's 3:4
WALL_TOP, WALL_BOTTOM = (226, 222, 214), (200, 196, 188)
SKIN, SKIN_SHADE = (224, 178, 148), (190, 140, 112)
HAIR = (58, 40, 30)
SHIRT, SHIRT_SHADE = (36, 58, 96), (24, 38, 66)
COLLAR = (238, 238, 242)
DEFAULT_OUTPUT = Path(__file__).with_name("portrait.jpg")


def _layer(size: tuple[int, int], draw: Callable[[ImageDraw.ImageDraw], None], blur: float = 0.0) -> Image.Image:
    """An L-mode mask drawn by ``draw``, softened by ``blur``."""
    mask = Image.new("L", size, 0)
    draw(ImageDraw.Draw(mask))
    return mask.filter(ImageFilter.GaussianBlur(blur)) if blur else mask


def draw_portrait(size: tuple[int, int] = SIZE, seed: int = 7) -> Image.Image:
    """The portrait as an RGB image; the same ``size`` and ``seed`` always give the same pixels."""
    width, height = size
    sx, sy = width / SIZE[0], height / SIZE[1]

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)

    # The wall: a gentle vertical gradient, lighter behind the head.
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    wall = (1 - t) * np.array(WALL_TOP) + t * np.array(WALL_BOTTOM)
    image = Image.fromarray(np.broadcast_to(wall, (height, width, 3)).astype(np.uint8))
    glow = _layer(size, lambda d: d.ellipse(box(120, 80, 480, 520), fill=60), blur=90 * sx)
    image.paste((240, 238, 232), mask=glow)

    # A soft shadow on the wall, behind the shoulders.
    shadow = _layer(size, lambda d: d.ellipse(box(60, 600, 580, 1100), fill=70), blur=40 * sx)
    image.paste((150, 146, 140), mask=shadow)

    # Shoulders and torso, darker on one side, and a white collar.
    torso = _layer(size, lambda d: d.ellipse(box(30, 530, 570, 1130), fill=255), blur=1.5)
    image.paste(SHIRT, mask=torso)
    side = _layer(size, lambda d: d.ellipse(box(330, 580, 640, 1160), fill=150), blur=30 * sx)
    image.paste(SHIRT_SHADE, mask=ImageChops.multiply(side, torso))
    collar = [(235, 535), (300, 640), (365, 535), (340, 530), (300, 595), (260, 530)]
    image.paste(COLLAR, mask=_layer(size, lambda d: d.polygon([(x * sx, y * sy) for x, y in collar], fill=255), 1.2))

    # Neck, ears, face.
    neck = _layer(size, lambda d: d.rounded_rectangle(box(252, 420, 348, 575), 30 * sx, fill=255), blur=1.5)
    image.paste(SKIN_SHADE, mask=neck)
    for ear in (box(168, 280, 212, 370), box(388, 280, 432, 370)):
        image.paste(SKIN_SHADE, mask=_layer(size, lambda d, e=ear: d.ellipse(e, fill=255), blur=1.5))
    face = _layer(size, lambda d: d.ellipse(box(185, 150, 415, 470), fill=255), blur=1.5)
    image.paste(SKIN, mask=face)
    cheek = _layer(size, lambda d: d.ellipse(box(330, 180, 440, 470), fill=110), blur=25 * sx)
    image.paste(SKIN_SHADE, mask=ImageChops.multiply(cheek, face))

    # Hair: a cap over the top of the head, longer at the sides, with a loose edge of strands.
    rng = np.random.default_rng(seed)

    def hair(d: ImageDraw.ImageDraw) -> None:
        d.chord(box(178, 112, 422, 372), 180, 360, fill=255)
        d.ellipse(box(176, 150, 226, 300), fill=255)
        d.ellipse(box(374, 150, 424, 300), fill=255)
        for _ in range(180):
            angle = rng.uniform(np.pi * 1.0, np.pi * 2.0)
            r0, r1 = rng.uniform(108, 118), rng.uniform(118, 130)
            cx, cy = 300, 242
            d.line(
                [
                    ((cx + r0 * np.cos(angle)) * sx, (cy + r0 * np.sin(angle)) * sy),
                    ((cx + r1 * np.cos(angle)) * sx, (cy + r1 * np.sin(angle)) * sy),
                ],
                fill=255,
                width=max(1, round(2 * sx)),
            )

    image.paste(HAIR, mask=_layer(size, hair, blur=1.2))

    # Eyebrows, eyes, nose, mouth.
    features = ImageDraw.Draw(image)
    line = max(2, round(5 * sx))
    for x in (250, 350):
        features.arc(box(x - 30, 262, x + 30, 290), 200, 340, fill=HAIR, width=line)
        features.ellipse(box(x - 20, 290, x + 20, 310), fill=(246, 244, 240))
        features.ellipse(box(x - 9, 291, x + 9, 309), fill=(70, 52, 38))
        features.ellipse(box(x - 4, 296, x + 4, 304), fill=(20, 16, 14))
    nose = [(300, 310), (291, 370), (306, 375)]
    features.line([(x * sx, y * sy) for x, y in nose], fill=SKIN_SHADE, width=line)
    features.arc(box(262, 380, 338, 422), 20, 160, fill=(160, 70, 70), width=line)

    # A little sensor-like noise, so that it compresses and decodes like a photo.
    pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 2.0, (height, width, 3)).round().astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


def main(argv: list[str]) -> int:
    """Write the portrait to the given path, or beside this script."""
    target = Path(argv[0]) if argv else DEFAULT_OUTPUT
    draw_portrait().save(target, "JPEG", quality=88, optimize=True, dpi=(300, 300))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
