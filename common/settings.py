"""All configuration, read once from the environment (``BACKDROP_`` prefix) into one object."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_PATH = Path("pretrained") / "modnet_photographic_portrait_matting.ckpt"


class Settings(BaseSettings):
    """Every tunable of Backdrop. Nothing else in the code reads ``os.environ``."""

    model_config = SettingsConfigDict(env_prefix="BACKDROP_", env_file=None, extra="ignore")

    # --- model ---------------------------------------------------------------------------
    model_path: Path = Field(
        default=DEFAULT_MODEL_PATH,
        description="MODNet checkpoint (the official modnet_photographic_portrait_matting.ckpt).",
    )
    device: str = Field(default="auto", description="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ...")
    torch_threads: int | None = Field(
        default=None, ge=1, description="intra-op CPU threads; None keeps torch's default"
    )
    cpu_bf16: Literal["auto", "on", "off"] = Field(
        default="auto", description="bf16 autocast on CPUs with native bf16 support (AMX/AVX512-BF16)"
    )

    # --- inference size -------------------------------------------------------------------
    inference_ref_size: int = Field(
        default=512, ge=32, description="short side of the network input, before /32 rounding"
    )
    inference_max_side: int = Field(
        default=1024, ge=32, description="upper bound on the long side of the network input"
    )

    # --- input limits ---------------------------------------------------------------------
    max_image_pixels: int = Field(default=50_000_000, ge=1, description="refuse decoded images above this many pixels")
    min_image_side: int = Field(default=32, ge=1, description="refuse images with a side below this")

    # --- output ---------------------------------------------------------------------------
    decontaminate: bool = Field(default=True, description="estimate the true foreground colour at soft edges")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
