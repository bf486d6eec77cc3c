"""The node's spool (server/spool.py): nameless files in <data_dir>/spool, read back whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailfort.errors import StoreUnavailable
from mailfort.server.spool import Spool, SpoolFile


def open_fds_in(directory: Path) -> int:
    prefix = str(directory.resolve()) + "/"
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(prefix):
                count += 1
        except OSError:
            pass
    return count


async def test_a_spool_file_has_no_name_and_reads_back_after_a_prefix(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    file = spool.open()
    message = os.urandom(300_000)
    for at in range(0, len(message), 65536):
        file.write(bytearray(message[at : at + 65536]))
    assert list(spool.directory.iterdir()) == []  # nothing to leave behind, ever
    assert open_fds_in(spool.directory) == 1
    assert file.size == len(message)
    assert await file.read(b"Received: x\r\n") == b"Received: x\r\n" + message
    assert await file.read() == message  # again: it stays until closed
    file.close()
    file.close()
    assert open_fds_in(spool.directory) == 0
    with pytest.raises(StoreUnavailable):
        await file.read()


def test_prepare_creates_the_directory_and_removes_leftovers(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "spool"
    Spool(directory).prepare()
    assert directory.is_dir()
    (directory / "tmpabc").write_bytes(b"x" * 100)
    (directory / "old").mkdir()
    (directory / "old" / "f").write_bytes(b"y")
    Spool(directory).prepare()
    assert list(directory.iterdir()) == []


async def test_a_spool_that_cannot_open_fails_the_write_later_not_the_session(
    tmp_path: Path,
) -> None:
    file = Spool(tmp_path / "missing").open()  # no directory: prepare() was never run
    file.write(b"x" * 100)  # the session keeps reading the client's data
    assert file.size == 100 and file.error
    with pytest.raises(StoreUnavailable):
        await file.read()


async def test_a_full_disk_fails_the_write_later_not_the_session() -> None:
    # /dev/full answers every write with ENOSPC, as a full file system does.
    file = SpoolFile(open("/dev/full", "wb", buffering=0))  # noqa: SIM115
    buffer = bytearray(b"x" * 65536)
    file.write(buffer)
    del buffer[:100]  # the caller's buffer is not held by the error
    file.write(b"more")
    assert file.size == 65536 + 4 and file.error is not None and "space" in file.error
    with pytest.raises(StoreUnavailable):
        await file.read()
    file.close()
