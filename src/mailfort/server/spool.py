"""The node's spool: message data on its way in, kept on disk instead of in memory.

An SMTP DATA section or an IMAP APPEND literal past a small threshold (`SPOOL_THRESHOLD`) is
written here as it arrives, so a session in the middle of a 25 MB message holds a file, not
25 MB of RAM. The store write reads it back, within the node's `MemoryBudget`.

A spool file never has a name: it is opened with O_TMPFILE where the file system has it (else
created and unlinked at once, by `tempfile.TemporaryFile`), so its space is freed when it is
closed or when the process dies, whatever happens to the session. The directory lives in the
node's data dir (`<data_dir>/spool`), not in /tmp, which is often a RAM-backed tmpfs; `prepare()`
creates it at start and removes anything left there (a crash inside the fallback's window).

A file that cannot be written (disk full, no directory) does not fail the session while it
reads: it drops what it gets and fails the store write later, which answers with a temporary
error (`StoreUnavailable`: SMTP 451, IMAP NO [UNAVAILABLE]). The client's data is read to its
end either way, so the protocol stays in step.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from mailfort.errors import StoreUnavailable

log = logging.getLogger("mailfort.spool")

# Message data up to this many octets stays in memory; more goes to the spool. Large enough
# that most mail never touches the disk, small enough that all sessions together stay small.
SPOOL_THRESHOLD: Final = 64 * 1024


class SpoolFile:
    """One message's octets on their way in. It is a `LiteralSink` (IMAP) and a `DataSink`
    (SMTP); `close()` (or `discard()`) frees it, and may be called any number of times."""

    def __init__(self, file: io.FileIO | None, error: str | None = None) -> None:
        self._file = file
        self.error = error  # why the octets could not be kept
        self.size = 0  # octets written (or dropped after an error)
        self.closed = False

    def write(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if self._file is None:
            return
        try:
            written = self._file.write(data)
            while written is not None and written < len(data):  # a raw write may be short
                data = data[written:]
                written = self._file.write(data)
        except OSError as exc:
            # Only its text is kept: the traceback would hold the caller's buffer exported.
            self._failed(str(exc))

    def _failed(self, error: str) -> None:
        log.warning("event=spool_write_failed error=%s", error)
        self.error = error
        self._close_file()

    def discard(self) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        self._close_file()

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                log.warning("event=spool_close_failed error=%s", exc)

    async def read(self, prefix: bytes = b"") -> bytearray:
        """`prefix` and then the octets written, in one buffer (the only copy in memory).

        Read in a worker thread: a 25 MB read must not hold the event loop. Raises
        StoreUnavailable when the octets could not be kept."""
        if self.error is not None or self._file is None:
            raise StoreUnavailable(f"message spool: {self.error or 'closed'}")
        try:
            return await asyncio.to_thread(self._read, self._file, prefix)
        except (OSError, ValueError) as exc:  # ValueError: closed under us (session ended)
            raise StoreUnavailable(f"message spool: {exc}") from None

    async def head(self, size: int) -> bytes:
        """The first `size` octets written (a message's header block, to check it before the
        whole message is read). Raises StoreUnavailable when the octets could not be kept."""
        if self.error is not None or self._file is None:
            raise StoreUnavailable(f"message spool: {self.error or 'closed'}")
        file = self._file
        try:
            return await asyncio.to_thread(os.pread, file.fileno(), min(size, self.size), 0)
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"message spool: {exc}") from None

    def _read(self, file: io.FileIO, prefix: bytes) -> bytearray:
        buffer = bytearray(len(prefix) + self.size)
        buffer[: len(prefix)] = prefix
        view = memoryview(buffer)
        at, end = len(prefix), len(buffer)
        file.seek(0)
        while at < end:
            got = file.readinto(view[at:])
            if not got:
                raise OSError("spool file is shorter than what was written")
            at += got
        view.release()
        return buffer


class Spool:
    """The spool directory of one node; `open()` gives a new spool file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def prepare(self) -> None:
        """Create the directory and empty it: nothing in it can belong to a live session."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.iterdir():
            try:
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
            except OSError as exc:
                log.warning("event=spool_cleanup_failed path=%s error=%s", leftover, exc)

    def open(self) -> SpoolFile:
        try:
            # Unbuffered: writes go straight to the kernel, so nothing of a message sits in a
            # Python buffer, and nothing is lost if the file is read back at any moment.
            file = tempfile.TemporaryFile(dir=self.directory, buffering=0)  # noqa: SIM115
        except OSError as exc:
            log.warning("event=spool_open_failed error=%s", exc)
            return SpoolFile(None, str(exc))
        return SpoolFile(file)  # buffering=0: the raw file itself
