"""Multipart uploads spooled to disk as they arrive, never held in the API's memory.

Werkzeug keeps each file part of a form in a stream its request class makes; its default keeps parts
under 500 KB in memory and opens one temporary file per larger part, so a batch of many photos holds
them in memory or holds one file descriptor per photo. Here every file part of a request is a window
of one temporary file of that request (unnamed, gone when the request ends): the memory and the file
descriptors a request holds do not grow with its photos.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO, Any

from flask import Request


class SpooledPart(io.RawIOBase):
    """One file part: the bytes ``[start, start + length)`` of the request's spool file.

    Parts are written one after the other (a multipart body holds them in sequence), each at the end
    of the spool; positioned reads and writes leave the spool's own file position alone.
    """

    def __init__(self, fd: int, start: int) -> None:
        super().__init__()
        self._fd = fd
        self._start = start
        self._length = 0
        self._position = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            written += os.pwrite(self._fd, view[written:], self._start + self._length + written)
        self._length += written
        self._position = self._length
        return written

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._length - self._position)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._start + self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    @property
    def end(self) -> int:
        """Where the next part starts in the spool."""
        return self._start + self._length


class SpoolingRequest(Request):
    """Flask's request, with its form's file parts in one temporary file (see the module's docstring)."""

    _spool: IO[bytes] | None = None
    _last_part: SpooledPart | None = None

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the request
        start = self._last_part.end if self._last_part is not None else 0
        self._last_part = SpooledPart(self._spool.fileno(), start)
        return self._last_part  # type: ignore[return-value]

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._spool is not None:
                self._spool.close()
                self._spool = None
