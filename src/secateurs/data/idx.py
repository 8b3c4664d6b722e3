"""Reader for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 <dtype> <ndim>``, ``ndim`` big-endian uint32 dimension sizes, then
the array in C order, big-endian. Files may be gzip-compressed; that is detected from the content (gzip magic
``1f 8b``), not the file name, because mirrors and distributions disagree about extensions.

The decoded arrays are cached per process, keyed on (path, size, mtime), so repeated ``get_dataset`` calls in one
process (tests, sweeps) decode the 47 MB Fashion-MNIST training images once, and a replaced file is re-read.
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

# IDX type code -> big-endian numpy dtype
_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str], *, ndim: int | None = None) -> torch.Tensor:
    """Decode an IDX file (raw or gzip) into a tensor with the file's native dtype.

    ``ndim`` (e.g. 3 for images, 1 for labels) is checked when given, so a swapped images/labels file is reported
    instead of producing nonsense. Every structural problem raises ``ValueError`` naming the file.
    The returned tensor is shared with the cache: treat it as read-only.
    """
    p = Path(path).resolve()
    st = p.stat()
    arr = _read_cached(str(p), st.st_size, st.st_mtime_ns)
    if ndim is not None and arr.dim() != ndim:
        raise ValueError(f"IDX file {p}: expected {ndim} dimensions, found {arr.dim()} {tuple(arr.shape)}")
    return arr


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, size: int, mtime_ns: int) -> torch.Tensor:
    del size, mtime_ns  # only part of the cache key
    return torch.from_numpy(decode_idx(_read_bytes(Path(path)), source=path))


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"IDX file {path}: corrupt gzip data ({e})") from None


def decode_idx(buf: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes; validates the magic number, the type code and that the size matches the header exactly."""
    if len(buf) < 4:
        raise ValueError(f"IDX file {source}: too short ({len(buf)} bytes) to hold a header")
    zero0, zero1, code, ndim = buf[0], buf[1], buf[2], buf[3]
    if zero0 != 0 or zero1 != 0 or code not in _DTYPES or ndim == 0:
        raise ValueError(
            f"IDX file {source}: bad magic number 0x{buf[:4].hex()} "
            "(expected 00 00 <type 08/09/0B/0C/0D/0E> <ndim >= 1>); not an IDX file?"
        )
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"IDX file {source}: truncated header ({len(buf)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise ValueError(
            f"IDX file {source}: size mismatch: header says shape {dims} of {dtype.name} "
            f"({expected} bytes in all) but the file has {len(buf)} bytes (truncated or corrupt)"
        )
    # copy: frombuffer is read-only and big-endian; torch wants native, writable memory
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def encode_idx(arr: np.ndarray) -> bytes:
    """Inverse of :func:`decode_idx` (used to write test fixtures and tiny local datasets)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}
    a = np.ascontiguousarray(arr)
    code = codes.get(a.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"encode_idx: dtype {a.dtype} has no IDX type code")
    head = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(np.dtype(_DTYPES[code])).tobytes()
