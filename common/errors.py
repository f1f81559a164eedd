"""The one exception hierarchy of Backdrop.

Every error a user can cause or see is a ``BackdropError`` with a stable ``code`` (used in API
bodies, job records and CLI summaries), the HTTP status the API maps it to, and ``retryable``: whether
the same work may succeed a little later (the worker retries exactly those, with backoff).
"""

from __future__ import annotations

import copy
from typing import Self


class BackdropError(Exception):
    """Base of every error Backdrop raises on purpose."""

    code = "internal_error"
    http_status = 500
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def about(self, subject: str) -> Self:
        """The same error, its message naming what it is about (``"background_image: ..."``)."""
        named = copy.copy(self)
        named.message = f"{subject}: {self.message}"
        named.args = (named.message,)
        return named


# --- bad input: the request or file is at fault; retrying will not help -------------------


class InvalidInput(BackdropError):
    code = "invalid_input"
    http_status = 400


class InvalidOption(InvalidInput):
    """A parameter (background, format, quality, ...) is not valid."""

    code = "invalid_option"
    http_status = 422


class UnsupportedImage(InvalidInput):
    """The bytes are not an image of an accepted type."""

    code = "unsupported_image"
    http_status = 415


class CorruptImage(InvalidInput):
    """The file claims to be an accepted image type but cannot be decoded (e.g. truncated)."""

    code = "corrupt_image"
    http_status = 422


class ImageTooLarge(InvalidInput):
    """More pixels (or bytes) than the configured limit: refused before decoding."""

    code = "image_too_large"
    http_status = 413


class ImageTooSmall(InvalidInput):
    """A side is below the configured minimum."""

    code = "image_too_small"
    http_status = 422


class UnsafeURL(InvalidInput):
    """A URL Backdrop would fetch is refused: not http(s), has userinfo, or reaches a non-public address."""

    code = "unsafe_url"
    http_status = 422


class FetchFailed(InvalidInput):
    """The remote end of a URL answered badly: HTTP >= 400, too big, too slow, too many redirects, unreachable.

    ``transient`` marks what may work a little later (unreachable, timed out, HTTP 408/429/5xx): such
    a failure is ``retryable``, and the worker retries it with backoff before failing the job.
    """

    code = "fetch_failed"
    http_status = 422

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.retryable = transient


# --- the model and its weights --------------------------------------------------------------


class ModelError(BackdropError):
    code = "model_error"
    http_status = 500


class WeightsMissing(ModelError):
    """The checkpoint file is not where the settings say; the message says how to fetch it."""

    code = "weights_missing"
    http_status = 503


class InvalidCheckpoint(ModelError):
    """The checkpoint is unreadable or does not match the MODNet architecture."""

    code = "invalid_checkpoint"
    http_status = 500


class WeightsDownloadError(ModelError):
    """No mirror delivered a file with the expected size and sha256."""

    code = "weights_download_failed"
    http_status = 502


# --- storage --------------------------------------------------------------------------------


class StorageError(BackdropError):
    """Object storage is unreachable or failing (network, 5xx, timeouts, credentials): callers retry these."""

    code = "storage_unavailable"
    http_status = 503
    retryable = True


# --- services -------------------------------------------------------------------------------


class QueueUnavailable(BackdropError):
    """Redis (the queue and the job records) cannot be reached; retrying later may work."""

    code = "queue_unavailable"
    http_status = 503
    retryable = True


class WorkerLost(BackdropError):
    """A job delivered the most times allowed whose worker never finished it (it died each time, e.g.
    killed for memory): failed rather than delivered again, so it cannot take down worker after worker."""

    code = "worker_lost"
    http_status = 500
    retryable = False


# --- the HTTP API: tenancy, lookups, limits -------------------------------------------------


class Unauthorized(BackdropError):
    """No API key, or an unknown or revoked one."""

    code = "unauthorized"
    http_status = 401


class LinkRefused(BackdropError):
    """A signed download link that is malformed, tampered with or expired."""

    code = "invalid_signature"
    http_status = 403


class NotFound(BackdropError):
    """Unknown, deleted or expired, or another key's (reported the same, never as forbidden)."""

    code = "not_found"
    http_status = 404


class RecordDamaged(BackdropError):
    """A job record that can no longer be read (e.g. a field that is not valid JSON): it can only be deleted."""

    code = "record_damaged"
    http_status = 410

    def __init__(self, message: str, *, owner: str | None, batch_id: str | None = None) -> None:
        super().__init__(message)
        self.owner = owner
        self.batch_id = batch_id  # as far as the record still says


class StorageFull(StorageError):
    """Local storage has less free space than the configured minimum: uploads would fail."""

    code = "storage_full"


class ObjectNotFound(NotFound):
    """A stored object (an upload or a result) does not exist, or no longer does: a kind of NotFound."""


class IdempotencyConflict(BackdropError):
    """An Idempotency-Key reused with a different request body."""

    code = "idempotency_key_reused"
    http_status = 422


class IdempotencyInProgress(BackdropError):
    """Another request with this Idempotency-Key is still creating its batch (or died doing it, and its
    hold on the key has not run out yet): the same request a few seconds later gets its answer."""

    code = "idempotency_key_in_use"
    http_status = 409
    retryable = True


class TooManyPending(BackdropError):
    """The key's quota of queued and processing jobs is used up."""

    code = "too_many_pending_jobs"
    http_status = 429


# --- ID photos: refusals to frame a photo, specs, sizes or sheets that cannot be met ----------------
# Each is the user's to fix (another photo, another option): none is retried, all answer 422.


class NoFace(InvalidInput):
    """No face was found in the photo."""

    code = "no_face"
    http_status = 422


class MultipleFaces(InvalidInput):
    """More than one face of comparable size: an ID photo shows one person."""

    code = "multiple_faces"
    http_status = 422


class FaceCutOff(InvalidInput):
    """The face or the top of the head is cut off by the photo's edge."""

    code = "face_cut_off"
    http_status = 422


class MatteMismatch(InvalidInput):
    """The matte does not cover the detected face, so the crown cannot be measured."""

    code = "matte_does_not_cover_face"
    http_status = 422


class NoAlphaChannel(InvalidInput):
    """``matte_source=alpha`` was asked for, but the image has no transparency to use as the matte."""

    code = "no_alpha_channel"
    http_status = 422


class ResolutionTooLow(InvalidInput):
    """Reaching the spec's pixel size would upscale the photo by more than the allowed factor."""

    code = "resolution_too_low"
    http_status = 422

    def __init__(self, message: str, *, factor: float, max_factor: float) -> None:
        super().__init__(message)
        self.factor = factor
        self.max_factor = max_factor


class FileSizeUnreachable(InvalidInput):
    """No allowed JPEG quality gives a file within the asked size limits."""

    code = "file_size_unreachable"
    http_status = 422


class SheetDoesNotFit(InvalidInput):
    """Not one photo fits on the asked paper."""

    code = "sheet_does_not_fit"
    http_status = 422


class UnknownSpec(InvalidOption):
    """An ID-photo spec id that is not in the catalogue."""

    code = "unknown_id_spec"
    http_status = 422


class InvalidSpec(InvalidOption):
    """A custom spec with impossible numbers (sizes, ranges)."""

    code = "invalid_id_spec"
    http_status = 422


class UnknownSheet(InvalidOption):
    """A print-sheet paper size that is not offered."""

    code = "unknown_sheet"
    http_status = 422


# Stable codes of the errors the HTTP layer itself raises (routing, methods, body size, rate limits).
HTTP_ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    429: "rate_limited",
    431: "request_header_fields_too_large",
    501: "not_implemented",
}
OTHER_HTTP_ERROR_CODE = "http_error"


def error_codes() -> list[str]:
    """Every code an error body or a failed job can carry: the hierarchy's and the HTTP layer's."""
    codes = {OTHER_HTTP_ERROR_CODE, *HTTP_ERROR_CODES.values()}
    pending: list[type[BackdropError]] = [BackdropError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return sorted(codes)
