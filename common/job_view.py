"""The public JSON of a job: what clients poll and what webhooks deliver."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from common.jobs import Job, JobStatus, now
from common.settings import Settings
from common.storage import Storage


def job_view(job: Job, storage: Storage, settings: Settings) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        # Records, uploads and results are deleted at this time (Redis TTL and the workers' cleanup).
        "expires_at": job.expires_at.isoformat(),
        "attempts": job.attempts,
        "batch_id": job.batch_id,
        "input": {**job.input.model_dump(), "url": job.image_url},
        "options": job.options.model_dump(exclude={"background_image_key"}),
        "results": None,
        "error": job.error.model_dump() if job.error else None,
    }
    if job.status is JobStatus.SUCCEEDED:
        expiry = min(settings.url_expiry_seconds, max(1, int((job.expires_at - now()).total_seconds())))
        expires_at = (now() + timedelta(seconds=expiry)).isoformat()
        view["results"] = {
            name: {
                "url": storage.url(result.key, expires_in=expiry, filename=f"{job.id}-{result.key.rsplit('/', 1)[1]}"),
                "expires_at": expires_at,
                "format": result.format,
                "media_type": result.media_type,
                "bytes": result.bytes,
                "width": result.width,
                "height": result.height,
            }
            for name, result in job.results.items()
        }
    return view
