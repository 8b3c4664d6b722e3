"""The compressed sparse checkpoint: non-zero values plus the smallest index, per tensor, in safetensors + JSON.

A sparse checkpoint directory is an ordinary checkpoint (``model.json``, ``summary.json``) whose weights are
``weights.sparse.safetensors`` + ``sparse.json`` instead of ``model.safetensors``. ``sparse.json`` says, for every
state-dict entry, how it is stored::

    {"format": "secateurs-sparse", "version": 1,
     "tensors": {"fc1.weight": {"encoding": "delta", "shape": [300, 784], "dtype": "float32"}, ...}}

Encodings (``k`` stored values of ``e`` bytes, ``n`` entries, ``r`` rows):

* ``dense``   — the tensor itself (integer buffers, and any tensor no index makes smaller): ``n·e`` bytes;
* ``bitmask`` — ``NAME/values`` + ``NAME/mask``, one bit per entry packed LSB first: ``k·e + n/8``;
* ``delta``   — ``NAME/values`` + ``NAME/gaps`` (uint8): each stored entry's distance from the previous one in
  row-major order (the first from position −1). A gap over 255 is bridged by filler entries of value +0.0 at
  255 steps (Han et al.'s relative indexing), so the cost is ``(k + fillers)·(e + 1)``;
* ``csr``     — ``NAME/values`` + ``NAME/indptr`` (int32, per row of the tensor viewed as ``r × n/r``) +
  ``NAME/indices`` (the column, int16 holding uint16 bits when a row has at most 65,536 entries, else int32):
  ``k·(e + 2) + 4(r + 1)``.

The writer computes all four sizes exactly and keeps the smallest (ties: the order above). As a rule of thumb
(float32, uniformly random support, measured in ``benchmarks/results/sparse_inference.md``): bitmask wins above
~12 % density, delta between ~0.3 % and ~12 %, CSR below. Every non-zero entry (NaN and ±inf included) comes
back with its exact bit pattern. Zeros come back as +0.0: masking by multiplication (``w * mask``, what the
sparsifier does) leaves -0.0 in every pruned negative weight, and keeping that sign would cost up to one bit per
weight; -0.0 == +0.0 and both give the same outputs.

Loading validates every JSON field and every component (dtypes, lengths, index ranges) before it touches a
tensor, and never runs code: the safetensors file holds plain arrays only.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["INDEX_FILE", "WEIGHTS_FILE", "ENCODINGS", "encode", "decode", "encoded_sizes", "write_state",
           "read_state", "is_sparse_checkpoint", "weight_bytes"]

FORMAT = "secateurs-sparse"
VERSION = 1
INDEX_FILE = "sparse.json"
WEIGHTS_FILE = "weights.sparse.safetensors"
ENCODINGS = ("dense", "bitmask", "delta", "csr")
MAX_GAP = 255
# dtypes that can be stored sparsely, and the integer type of the same width whose zero is +0.0's bit pattern
_BITS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
         torch.bfloat16: torch.int16}
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8,
           "uint8": torch.uint8, "bool": torch.bool}
_NAMES = {v: k for k, v in _DTYPES.items()}


# ----------------------------------------------------------------------------------------------- sizes
def _stored(t: torch.Tensor) -> torch.Tensor:
    """Flat bool: entries that are not zero (NaN counts as non-zero; -0.0 as zero)."""
    return t.reshape(-1) != 0


def _rows(shape) -> int:
    return int(shape[0]) if len(shape) >= 2 else 1


def _fillers(positions: torch.Tensor) -> int:
    gaps = torch.diff(positions, prepend=positions.new_tensor([-1]))
    return int(((gaps - 1) // MAX_GAP).sum())


def encoded_sizes(t: torch.Tensor) -> dict[str, int]:
    """Exact payload bytes of ``t`` under every encoding that applies (only ``dense`` for non-float tensors)."""
    n, e = t.numel(), t.element_size()
    sizes = {"dense": n * e}
    if t.dtype not in _BITS or n == 0:
        return sizes
    stored = _stored(t)
    k = int(stored.sum())
    positions = stored.nonzero().reshape(-1)
    rows = _rows(t.shape)
    cols = n // rows
    sizes["bitmask"] = k * e + (n + 7) // 8
    sizes["delta"] = (k + (_fillers(positions) if k else 0)) * (e + 1)
    sizes["csr"] = k * (e + (2 if cols <= 65536 else 4)) + 4 * (rows + 1)
    return sizes


def choose(t: torch.Tensor) -> str:
    sizes = encoded_sizes(t)
    return min(sizes, key=lambda enc: (sizes[enc], ENCODINGS.index(enc)))


# ----------------------------------------------------------------------------------------------- encode / decode
def encode(name: str, t: torch.Tensor, encoding: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(entry for sparse.json, arrays for the safetensors file)`` for one tensor (smallest encoding by default)."""
    t = t.detach().cpu().contiguous()
    encoding = encoding or choose(t)
    entry = {"encoding": encoding, "shape": list(t.shape), "dtype": _NAMES[t.dtype]}
    if encoding == "dense":
        return entry, {name: t}
    if t.dtype not in _BITS:
        raise ValueError(f"{name}: encoding {encoding!r} needs a floating tensor, got {t.dtype}")
    flat = t.reshape(-1)
    stored = _stored(t)
    if encoding == "bitmask":
        return entry, {f"{name}/values": flat[stored], f"{name}/mask": _pack(stored)}
    if encoding == "delta":
        positions = stored.nonzero().reshape(-1)
        gaps = torch.diff(positions, prepend=positions.new_tensor([-1]))
        extra = (gaps - 1) // MAX_GAP  # fillers before each stored entry
        real = torch.cumsum(extra + 1, 0) - 1  # where each stored entry lands in the output
        length = int(real[-1]) + 1 if real.numel() else 0
        out_gaps = torch.full((length,), MAX_GAP, dtype=torch.int64)
        out_gaps[real] = gaps - MAX_GAP * extra
        values = torch.zeros(length, dtype=t.dtype)
        values[real] = flat[positions]
        return entry, {f"{name}/values": values, f"{name}/gaps": out_gaps.to(torch.uint8)}
    if encoding == "csr":
        rows = _rows(t.shape)
        m = stored.view(rows, -1)
        cols = m.shape[1]
        r, c = m.nonzero(as_tuple=True)
        indptr = torch.zeros(rows + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(torch.bincount(r, minlength=rows), 0)
        idx = c.to(torch.int32).to(torch.int16) if cols <= 65536 else c.to(torch.int32)  # int16 keeps uint16 bits
        return entry, {f"{name}/values": flat[stored], f"{name}/indptr": indptr.to(torch.int32),
                       f"{name}/indices": idx}
    raise ValueError(f"{name}: unknown encoding {encoding!r} (known: {', '.join(ENCODINGS)})")


def decode(name: str, entry: dict, arrays: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rebuild one tensor from its ``sparse.json`` entry and the arrays; every field is checked first."""
    encoding, shape, dtype = _check_entry(name, entry)
    n = 1
    for s in shape:
        n *= s
    if encoding == "dense":
        t = _array(arrays, name, name, dtype)
        if list(t.shape) != shape:
            raise ValueError(f"{name}: stored shape {list(t.shape)} differs from sparse.json's {shape}")
        return t
    values = _array(arrays, name, f"{name}/values", dtype, ndim=1)
    out = torch.zeros(n, dtype=dtype)
    if encoding == "bitmask":
        mask = _array(arrays, name, f"{name}/mask", torch.uint8, ndim=1)
        if mask.numel() != (n + 7) // 8:
            raise ValueError(f"{name}: bitmask has {mask.numel()} bytes, {(n + 7) // 8} expected for {n} entries")
        bits = _unpack(mask, n)
        if int(bits.sum()) != values.numel():
            raise ValueError(f"{name}: bitmask marks {int(bits.sum())} entries but {values.numel()} values are stored")
        out[bits] = values
    elif encoding == "delta":
        gaps = _array(arrays, name, f"{name}/gaps", torch.uint8, ndim=1)
        if gaps.numel() != values.numel():
            raise ValueError(f"{name}: {gaps.numel()} gaps for {values.numel()} values")
        if gaps.numel() and int(gaps.min()) == 0:
            raise ValueError(f"{name}: a delta gap of 0 (gaps are 1..{MAX_GAP})")
        positions = torch.cumsum(gaps.to(torch.int64), 0) - 1
        if positions.numel() and int(positions[-1]) >= n:
            raise ValueError(f"{name}: delta indices reach {int(positions[-1])}, the tensor has {n} entries")
        out[positions] = values
    else:  # csr
        rows = _rows(shape)
        cols = n // rows if rows else 0
        indptr = _array(arrays, name, f"{name}/indptr", torch.int32, ndim=1).to(torch.int64)
        raw = arrays.get(f"{name}/indices")
        if raw is None or raw.dtype not in (torch.int16, torch.int32) or raw.dim() != 1:
            raise ValueError(f"{name}: csr indices missing or not a 1-d int16/int32 array")
        indices = raw.to(torch.int64) & 0xFFFF if raw.dtype == torch.int16 else raw.to(torch.int64)
        if indptr.numel() != rows + 1 or int(indptr[0]) != 0 or int(indptr[-1]) != values.numel() \
                or bool((torch.diff(indptr) < 0).any()):
            raise ValueError(f"{name}: csr indptr is not a non-decreasing 0..{values.numel()} array of {rows + 1}")
        if indices.numel() != values.numel() or (indices.numel() and (int(indices.min()) < 0
                                                                      or int(indices.max()) >= cols)):
            raise ValueError(f"{name}: csr indices are not {values.numel()} columns in [0, {cols})")
        row_of = torch.repeat_interleave(torch.arange(rows), torch.diff(indptr))
        out[row_of * cols + indices] = values
    return out.view(shape)


def _check_entry(name: str, entry: Any) -> tuple[str, list[int], torch.dtype]:
    if not isinstance(entry, dict):
        raise ValueError(f"sparse.json: entry for {name!r} is not an object")
    encoding, shape, dtype = entry.get("encoding"), entry.get("shape"), entry.get("dtype")
    if encoding not in ENCODINGS:
        raise ValueError(f"sparse.json: {name}: encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shape):
        raise ValueError(f"sparse.json: {name}: shape {shape!r} is not a list of non-negative integers")
    if dtype not in _DTYPES:
        raise ValueError(f"sparse.json: {name}: dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    if encoding != "dense" and _DTYPES[dtype] not in _BITS:
        raise ValueError(f"sparse.json: {name}: encoding {encoding!r} needs a floating dtype, not {dtype}")
    return encoding, shape, _DTYPES[dtype]


def _array(arrays: dict, name: str, key: str, dtype: torch.dtype, ndim: int | None = None) -> torch.Tensor:
    t = arrays.get(key)
    if t is None:
        raise ValueError(f"{name}: array {key!r} is missing from {WEIGHTS_FILE}")
    if t.dtype != dtype or (ndim is not None and t.dim() != ndim):
        raise ValueError(f"{name}: array {key!r} is {t.dtype} with shape {list(t.shape)}, expected {dtype}"
                         + (f" with {ndim} dimension(s)" if ndim is not None else ""))
    return t


_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def _pack(bits: torch.Tensor) -> torch.Tensor:
    n = bits.numel()
    padded = torch.zeros((n + 7) // 8 * 8, dtype=torch.uint8)
    padded[:n] = bits.to(torch.uint8)
    return (padded.view(-1, 8) * _WEIGHTS).sum(1, dtype=torch.uint8)


def _unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    return ((packed.view(-1, 1) & _WEIGHTS) != 0).reshape(-1)[:n]


# ----------------------------------------------------------------------------------------------- files
@dataclass
class Written:
    """What :func:`write_state` stored: encoding per tensor, payload bytes, and the dense bytes it replaces."""

    encodings: dict[str, str]
    bytes: int
    dense_bytes: int


def write_state(state: dict[str, torch.Tensor], directory: str | os.PathLike) -> Written:
    """Write ``state`` (a state dict) into ``directory`` as ``weights.sparse.safetensors`` + ``sparse.json``."""
    directory = Path(directory)
    index: dict[str, dict] = {}
    arrays: dict[str, torch.Tensor] = {}
    dense_bytes = 0
    for name, t in state.items():
        if "/" in name:
            raise ValueError(f"state-dict key {name!r} contains '/', which the sparse format reserves")
        entry, parts = encode(name, t)
        index[name] = entry
        arrays.update({k: v.contiguous() for k, v in parts.items()})
        dense_bytes += t.numel() * t.element_size()
    save_file(arrays, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    (directory / INDEX_FILE).write_text(json.dumps({"format": FORMAT, "version": VERSION, "tensors": index},
                                                   indent=1) + "\n")
    return Written({k: v["encoding"] for k, v in index.items()}, weight_bytes(directory), dense_bytes)


def read_state(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict of a sparse checkpoint directory, validated (``ValueError`` names the first problem)."""
    directory = Path(directory)
    if not (directory / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"checkpoint {str(directory)!r} has no {WEIGHTS_FILE}")
    try:
        index = json.loads((directory / INDEX_FILE).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{INDEX_FILE} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{INDEX_FILE}: format is {index.get('format') if isinstance(index, dict) else index!r}, "
                         f"expected {FORMAT!r}")
    version = index.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise ValueError(f"{INDEX_FILE}: version {version!r} is not supported (this secateurs reads 1..{VERSION})")
    tensors = index.get("tensors")
    if not isinstance(tensors, dict):
        raise ValueError(f"{INDEX_FILE}: 'tensors' is not an object")
    for name, entry in tensors.items():
        _check_entry(name, entry)
    from safetensors import SafetensorError

    try:
        arrays = load_file(str(directory / WEIGHTS_FILE))
    except SafetensorError as e:  # not a ValueError: a corrupt file would otherwise escape as a traceback
        raise ValueError(f"{WEIGHTS_FILE} is not a readable safetensors file ({str(e).splitlines()[0]})") from None
    state = {name: decode(name, entry, arrays) for name, entry in tensors.items()}
    known = {k for name, e in tensors.items() for k in _keys(name, e)}
    if set(arrays) - known:
        raise ValueError(f"{WEIGHTS_FILE} holds arrays {sorted(set(arrays) - known)[:5]} that {INDEX_FILE} "
                         "does not describe")
    return {name: t.to(map_location) for name, t in state.items()}


def _keys(name: str, entry: Any) -> tuple[str, ...]:
    enc = entry.get("encoding") if isinstance(entry, dict) else None
    return {"dense": (name,), "bitmask": (f"{name}/values", f"{name}/mask"),
            "delta": (f"{name}/values", f"{name}/gaps"),
            "csr": (f"{name}/values", f"{name}/indptr", f"{name}/indices")}.get(enc, ())


def is_sparse_checkpoint(directory: str | os.PathLike) -> bool:
    return (Path(directory) / INDEX_FILE).is_file()


def weight_bytes(directory: str | os.PathLike) -> int:
    """Bytes on disk of a checkpoint's weights: the sparse files, or ``model.safetensors``."""
    directory = Path(directory)
    names = (WEIGHTS_FILE, INDEX_FILE) if is_sparse_checkpoint(directory) else ("model.safetensors",)
    return sum((directory / n).stat().st_size for n in names if (directory / n).is_file())
