"""All configuration, read once from the environment (``BACKDROP_`` prefix) into one object."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
        default="off", description="bf16 autocast on CPUs with native bf16 support (off: fails the 2e-2 fixture check)"
    )

    engine: Literal["auto", "torch", "openvino", "onnxruntime"] = Field(
        default="auto",
        description="how MODNet runs; auto: the fastest engine equal to torch within 1e-3 on a CPU "
        "(OpenVINO f32), torch on CUDA",
    )
    reduced_precision: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="bf16 (CPUs with native bf16) or fp16 (CUDA); auto: only when the self-check at worker "
        "start passes on these weights; an explicit BACKDROP_CPU_BF16 on/off still decides on a CPU",
    )
    reduced_precision_tolerance: float = Field(
        default=2e-2, gt=0, le=1, description="self-check: mean and p99 |Δα| must stay under half of this"
    )
    engine_cache_dir: str = Field(
        default="~/.cache/backdrop/engines",
        description="where converted engines are kept, keyed by checkpoint sha256 and engine version; empty: none",
    )

    # --- inference size -------------------------------------------------------------------
    inference_ref_size: int = Field(
        default=512, ge=32, description="short side of the network input, before /32 rounding"
    )
    inference_max_side: int = Field(
        default=1024, ge=32, description="upper bound on the long side of the network input"
    )
    shape_buckets: Literal["off", "resize"] = Field(
        default="off",
        description="resize network inputs into a few aspect-ratio buckets (common/sizing.py) so that "
        "concurrent jobs share batches; off: each photo's own aspect ratio",
    )
    gpu_pipeline: bool = Field(
        default=True,
        description="on a CUDA torch engine, keep each photo on the GPU from decode to encode (nvJPEG where "
        "torchvision imports, post-processing in torch); false: the CPU path of every other device",
    )
    cuda_graphs: bool = Field(
        default=True,
        description="on the GPU pipeline, replay MODNet from CUDA graphs captured per batch size and shape bucket",
    )

    # --- input limits ---------------------------------------------------------------------
    max_image_pixels: int = Field(default=50_000_000, ge=1, description="refuse decoded images above this many pixels")
    min_image_side: int = Field(default=32, ge=1, description="refuse images with a side below this")

    # --- service: queue and job records ---------------------------------------------------
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="broker and job records")
    job_ttl_seconds: int = Field(
        default=24 * 3600, ge=1, description="retention: job records, uploads and results are deleted after this"
    )
    url_expiry_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600, description="presigned result URLs")
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, description="largest accepted upload")
    max_batch_upload_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1024, description="largest multipart batch request (spooled to disk, not memory)"
    )
    max_batch_jobs: int = Field(default=10_000, ge=1, description="most images in one batch")
    max_json_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="largest JSON request body (413 before it is parsed)"
    )

    # --- service: tenancy and limits ------------------------------------------------------
    auth: Literal["required", "disabled"] = Field(
        default="required",
        description="API keys required; 'disabled' (one anonymous user) only for the embedded default (local storage)",
    )
    rate_limit: str = Field(default="600/minute", description="requests per API key (Flask-Limiter notation)")
    max_pending_jobs: int = Field(default=1000, ge=1, description="queued + processing jobs allowed per API key")
    max_wait_seconds: int = Field(default=60, ge=0, le=60, description="longest 'Prefer: wait=N' hold of a POST")
    poll_rate_limit: str | None = Field(
        default=None,
        description="GET polls of jobs and batches per API key, a budget apart from rate_limit; None: "
        "6000/minute while rate_limit is at its default, else rate_limit's value",
    )
    auth_failure_rate_limit: str = Field(
        default="60/minute", description="failed authentications per client address; beyond it 429, not 401"
    )
    file_rate_limit: str = Field(default="1200/minute", description="/v1/files downloads per client address")
    max_waiting_requests: int = Field(
        default=64,
        ge=0,
        description="'Prefer: wait' requests held at once per API process (each a greenlet polling Redis "
        "every 0.1 s); keep below its worker connections",
    )
    max_waiting_per_key: int = Field(
        default=8, ge=0, description="'Prefer: wait' requests held at once per API key, all processes together"
    )
    api_header_timeout_seconds: float = Field(
        default=15,
        gt=0,
        description="API: a connection must send a whole request header within this, from its start or the "
        "previous answer (idle keep-alive included), or it is closed",
    )
    api_body_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="API: longest pause while a request body arrives (408) or its answer is taken (closed)",
    )
    api_body_min_rate_bytes: int = Field(
        default=1024,
        ge=0,
        description="API: once a request body has taken longer than the body timeout, it must have averaged "
        "at least this many bytes a second, or it is answered 408 and closed (a body sent a byte at a time, "
        "each pause just under the timeout); 0: no minimum",
    )
    cleanup_interval_seconds: int = Field(default=300, ge=1, description="how often workers delete expired objects")
    cors_origins: str = Field(
        default="", description="comma-separated origins whose web pages may call the API (CORS); empty: none"
    )

    # --- service: storage ----------------------------------------------------------------
    storage: Literal["local", "s3"] = Field(default="local", description="where uploads and results live")
    data_dir: Path = Field(default=Path("data"), description="LocalStorage root and embedded Redis data")
    public_base_url: str = Field(
        default="http://127.0.0.1:8080", description="how clients reach the API (LocalStorage download URLs)"
    )
    signing_secret: str = Field(default="", description="HMAC key of LocalStorage URLs; empty: one per data dir")
    local_storage_min_free_bytes: int = Field(
        default=512 * 1024 * 1024, ge=0, description="local storage is not ready (readyz 503) with less free space"
    )
    s3_bucket: str = Field(default="backdrop", description="bucket for uploads and results")
    s3_endpoint_url: str | None = Field(default=None, description="S3 API endpoint (MinIO, R2); None: AWS")
    s3_public_endpoint_url: str | None = Field(default=None, description="endpoint written into presigned URLs")
    s3_region: str = Field(default="us-east-1")
    s3_access_key_id: str | None = Field(default=None)
    s3_secret_access_key: str | None = Field(default=None)
    s3_create_bucket: bool = Field(default=False, description="create the bucket at start when it is absent")
    storage_connect_timeout_seconds: float = Field(default=3.0, gt=0, description="S3: bound on connecting")
    storage_read_timeout_seconds: float = Field(default=10.0, gt=0, description="S3: bound on each read of an answer")
    storage_max_attempts: int = Field(
        default=2, ge=1, le=10, description="S3: attempts of one call, the first included"
    )
    storage_breaker_failures: int = Field(
        default=3, ge=1, description="API: storage errors in a row after which calls fail at once for a while"
    )
    storage_breaker_reset_seconds: float = Field(
        default=10.0, gt=0, description="API: how long storage calls fail at once before one is tried again"
    )

    # --- service: worker -----------------------------------------------------------------
    max_batch_size: int = Field(default=8, ge=1, le=256, description="images per forward pass")
    max_delay_ms: int = Field(default=20, ge=0, le=10_000, description="longest wait to fill a batch")
    worker_concurrency: int = Field(
        default=0, ge=0, description="jobs in flight per worker; 0: 2 x batch (GPU), 2 (CPU)"
    )
    worker_memory_budget_mb: int = Field(
        default=4096,
        ge=64,
        description="the estimated peak memory of the jobs one worker process post-processes at once (each "
        "job's from its pixels: 64 MB + 40 bytes a pixel, 2 GB at the 50 Mpx limit); a job above it runs alone",
    )
    visibility_timeout: int = Field(
        default=25, ge=5, description="seconds before an unacknowledged job is redelivered; above the longest job"
    )
    task_max_retries: int = Field(
        default=100, ge=0, description="most retries of a job's transient errors (storage, a photo URL), a last bound"
    )
    task_retry_deadline_seconds: float = Field(
        default=900, gt=0, description="transient errors are retried for this long after the first, then the job fails"
    )
    task_retry_backoff_max_seconds: float = Field(
        default=30, gt=0, description="longest pause between two retries of a job (the backoff doubles from 1 s)"
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="deliveries of a job to workers, then it fails worker_lost (it kills them)"
    )
    redis_outage_wait_seconds: int = Field(
        default=600, ge=0, description="how long a running job waits in its worker for Redis to come back"
    )
    reconcile_interval_seconds: float = Field(
        default=30, gt=0, description="how often the reconciler looks for pending jobs that have lost their message"
    )
    reconcile_after_timeouts: float = Field(
        default=3,
        ge=1,
        description="a pending job untouched for this many visibility timeouts, with no message, is enqueued again",
    )
    test_exit_before_enqueue_file: Path | None = Field(
        default=None,
        description="tests only: while this file exists, the API deletes it and exits between a record and its message",
    )

    # --- outbound requests ---------------------------------------------------------------
    fetch_allow_private: bool = Field(
        default=False,
        description="allow image_url and webhook targets on loopback/private/link-local networks; "
        "never the cloud metadata address",
    )
    fetch_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1, description="largest image_url download")
    fetch_timeout_seconds: float = Field(
        default=10.0, gt=0, description="bound on each connect and read, and on a whole fetch with its redirects"
    )
    fetch_max_redirects: int = Field(default=3, ge=0, le=20, description="redirects followed by image_url fetches")
    webhook_max_attempts: int = Field(default=8, ge=1, description="delivery attempts of one webhook event")

    # --- operations: logs and metrics -----------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="the level of the API's and the workers' logs"
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="the API's and the workers' logs: JSON lines, or plain text for reading"
    )
    worker_metrics_port: int = Field(
        default=9808, ge=0, le=65535, description="the port of a worker process's Prometheus /metrics; 0: none"
    )
    worker_metrics_host: str = Field(default="0.0.0.0", description="the address the worker's /metrics listens on")

    # --- output ---------------------------------------------------------------------------
    decontaminate: bool = Field(default=True, description="estimate the true foreground colour at soft edges")
    id_tilt_threshold_degrees: float = Field(
        default=1.0, ge=0, le=45, description="ID photos: level the eye line when it tilts more than this"
    )
    id_max_upscale: float = Field(
        default=2.0, ge=1, le=8, description="ID photos: refuse (resolution_too_low) to enlarge a photo more than this"
    )

    @model_validator(mode="after")
    def _anonymous_only_when_embedded(self) -> Settings:
        if self.auth == "disabled" and self.storage != "local":
            raise ValueError("BACKDROP_AUTH=disabled is only for the embedded default (BACKDROP_STORAGE=local)")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
