"""Logging for a busy node: one line per event, written in batches."""

from __future__ import annotations

import logging
import threading
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """Formats each record when it is logged, writes them together: at most `interval` seconds
    later, and at once for WARNING and above (and at exit, through logging.shutdown).

    A node logs a line per accepted message; one write per batch instead of a write and a flush
    per line halves what a line costs. The price: a SIGKILL loses up to `interval` of INFO lines."""

    def __init__(self, stream: TextIO, interval: float = 0.5) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._interval = interval
        threading.Thread(target=self._flush_periodically, name="log-writer", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        self.acquire()  # emit holds it already (an RLock); the timer thread does not
        try:
            lines, self._pending = self._pending, []
            if lines:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
        finally:
            self.release()

    def _flush_periodically(self) -> None:
        # A timed wait rather than time.sleep: libfaketime (which the clock-jump tests run a node
        # under) breaks time.sleep's absolute monotonic sleep, and this thread would die of it.
        pause = threading.Event()
        while True:
            pause.wait(self._interval)
            self.flush()


def _one_line(record: logging.LogRecord) -> bool:
    """asyncpg's tracebacks become one key=value line (one event per line, DESIGN.md)."""
    if record.name.startswith("asyncpg") and record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        record.msg = f"{record.getMessage()} error={error!r}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
    return True


def configure(*, batched: bool, stream: TextIO) -> None:
    # Our format shows none of these, yet logging looks each up for every record
    # (the logging HOWTO, "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler: logging.Handler = (
        BatchedStreamHandler(stream) if batched else logging.StreamHandler(stream)
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    # asyncpg's pool logs a traceback each time it cannot reach a database that is down; that
    # is an expected state we already answer with 4xx, not a bug.
    handler.addFilter(_one_line)
    logging.basicConfig(level=logging.INFO, handlers=[handler])
