"""Reading untrusted files and JSON without hanging, blowing up memory or leaking NaN.

Every reader of a user-named file (images to verify, RAW files, trust anchors, model
metadata, fingerprints) goes through :func:`read_regular`: a FIFO, a character device such
as ``/dev/zero``, a socket or a directory is refused before a single byte is read (a
FIFO is opened non-blocking, so opening it does not wait for a writer), and a file larger
than the caller's cap is refused from its ``st_size`` before it is read; a file that grows
while it is read is refused too. :func:`read_stream` does the same for file objects.

JSON from files (model metadata, fingerprint metadata) is parsed by :func:`loads_strict`:
``NaN``/``Infinity`` literals and numbers that overflow a float (``1e400``) are refused,
and nesting deep enough to exhaust Python's recursion limit is a ``ValueError`` rather
than a ``RecursionError``. JSON written for machines goes through :func:`dumps_strict`,
which never prints a bare ``NaN`` (invalid JSON): non-finite floats become ``null``.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NotRegularFileError", "read_regular", "read_stream", "read_json_file", "loads_strict", "finite_json", "dumps_strict"]


class NotRegularFileError(OSError):
    """A path names something other than a regular file, or a file above the size cap."""


def read_regular(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` bytes.

    Args:
        path: File to read.
        max_bytes: Largest size accepted, bytes.

    Raises:
        NotRegularFileError: a FIFO, device, socket or directory, or a file larger than
            ``max_bytes`` (from ``fstat`` before reading), or a file that grows while it
            is read.
        OSError: the path cannot be opened (missing, permissions).
    """
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("FIFO" if stat.S_ISFIFO(st.st_mode) else "character device" if stat.S_ISCHR(st.st_mode)
                    else "block device" if stat.S_ISBLK(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                    else "directory" if stat.S_ISDIR(st.st_mode) else "non-regular file")
            raise NotRegularFileError(f"{path}: is a {kind}, not a regular file")
        if st.st_size > max_bytes:
            raise NotRegularFileError(f"{path}: {st.st_size} bytes, above the {max_bytes}-byte limit")
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            # st_size + 1, not max_bytes + 1: a read of n bytes reserves n bytes up front.
            data = f.read(st.st_size + 1)
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > st.st_size:
        raise NotRegularFileError(f"{path}: grew while being read")
    return data


def read_stream(stream: Any, max_bytes: int, chunk: int = 1 << 20) -> bytes:
    """Read a binary file object to its end, refusing more than ``max_bytes``.

    Read in ``chunk``-byte pieces, so memory follows what the stream holds rather than
    the cap.

    Raises:
        NotRegularFileError: the stream holds more than ``max_bytes``.
        TypeError: ``read()`` does not return bytes (a text-mode file object).
    """
    parts: list[bytes] = []
    total = 0
    while True:
        piece = stream.read(min(chunk, max_bytes + 1 - total))
        if not isinstance(piece, (bytes, bytearray)):
            raise TypeError(f"the file object must be opened in binary mode, read() gave {type(piece).__name__}")
        if not piece:
            return b"".join(parts)
        parts.append(bytes(piece))
        total += len(piece)
        if total > max_bytes:
            raise NotRegularFileError(f"the stream holds more than the {max_bytes}-byte limit")


def _no_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not allowed")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:40]} overflows a float")
    return v


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity``, float overflow and pathological nesting.

    Raises:
        ValueError: invalid JSON (``json.JSONDecodeError`` is one), a non-finite number,
            or nesting too deep for the parser (Python's ``RecursionError`` is converted).
    """
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def finite_json(value: Any) -> Any:
    """A copy of ``value`` fit for strict JSON: non-finite floats become ``None``, numpy
    scalars and arrays become Python numbers and lists, tuples become lists."""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return finite_json(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """``json.dumps(finite_json(value), allow_nan=False, **kwargs)``: always valid JSON."""
    return json.dumps(finite_json(value), allow_nan=False, **kwargs)


def read_json_file(path: str | os.PathLike[str], max_bytes: int = 16 << 20) -> Any:
    """:func:`loads_strict` of a regular file of at most ``max_bytes`` (default 16 MiB), UTF-8.

    Raises:
        OSError: as :func:`read_regular`. ValueError: not UTF-8 or not strict JSON.
    """
    data = read_regular(Path(path), max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8: {e}") from None
    return loads_strict(text)
