"""`write_atomic`: the final name holds all of the new bytes or what it held before, never a part."""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Iterator

import pytest

from lsst.ts.rapidanalysis.atomic_file import temporary_path, write_atomic


def leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_writes_bytes_and_chunks(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a.bin"
    write_atomic(path, b"hello")
    assert path.read_bytes() == b"hello"
    write_atomic(str(path), [b"ab", bytearray(b"cd"), memoryview(b"ef")], fsync=True)
    assert path.read_bytes() == b"abcdef"
    assert leftovers(tmp_path) == []


def test_non_byte_buffer_written_whole(tmp_path: pathlib.Path) -> None:
    """A chunk whose items are wider than a byte (e.g. an int16 array's buffer) is written whole."""
    import array

    data = array.array("h", range(1000))
    write_atomic(tmp_path / "a.bin", [memoryview(data)])
    assert (tmp_path / "a.bin").read_bytes() == data.tobytes()


def test_failure_midway_leaves_no_partial_file(tmp_path: pathlib.Path) -> None:
    """A write that fails after part of the data leaves neither the file nor a temporary file."""
    path = tmp_path / "raw.fits"

    def chunks() -> Iterator[bytes]:
        yield b"x" * 100_000
        assert temporary_path(path).stat().st_size == 100_000  # part of it is on disk
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        write_atomic(path, chunks())
    assert not path.exists()
    assert leftovers(tmp_path) == []


def test_failure_keeps_the_old_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "raw.fits"
    write_atomic(path, b"old")

    def chunks() -> Iterator[bytes]:
        yield b"new, but only half"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, chunks())
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_failed_rename_cleans_up(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_atomic(tmp_path / "a.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_raises(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no" / "such" / "a.bin", b"data")


def test_threads_writing_one_path(tmp_path: pathlib.Path) -> None:
    """Writers of the same path in several threads each use their own temporary file."""
    path = tmp_path / "a.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=write_atomic, args=(path, p)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert path.read_bytes() in payloads
    assert leftovers(tmp_path) == []
