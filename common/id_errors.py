"""Errors of the ID-photo mode: refusals to frame a photo, and specs, sizes or sheets that cannot be met.

They subclass the classes of ``common.errors`` (the one hierarchy the API maps) and are meant to move
there; until then they live here so that the ID-photo modules can be built beside the rest. Every one
is the user's to fix (another photo, another option), so none is retried and all answer HTTP 422.
"""

from __future__ import annotations

from common.errors import InvalidInput, InvalidOption


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
