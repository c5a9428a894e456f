"""Structure checks of checkpoint files, without importing torch (the daemon stays light).

- torch.save archives (zip, the default since PyTorch 1.6): CRC of every member, and a
  `data.pkl` record, which every torch.save archive has.
- safetensors: an 8-byte little-endian header length, a JSON header, and tensor data whose
  offsets tile the rest of the file exactly (a truncated copy fails here).
- a sha256 sidecar (`<file>.sha256`, `sha256sum` format) or a digest the job logged in its
  checkpoint-saved event (`ml.checkpoint.sha256`).

Each check returns a list of problems; empty means the file looks whole. Loading the tensors
(`checkpoints verify --deep`) is done by `deepcheck` in a child process.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
import zipfile
from pathlib import Path

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
WEIGHT_SUFFIXES = TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)
SIDECAR_SUFFIX = ".sha256"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit

# Bytes per element of the safetensors dtypes (sub-byte types round up per tensor, checked loosely).
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}


def check_file(path: Path, expected_sha256: str | None = None) -> list[str]:
    """Problems with one checkpoint file (empty list: it looks whole)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return [f"{path.name}: cannot read ({exc.strerror})"]
    if size == 0:
        return [f"{path.name}: empty file"]
    if path.suffix == SAFETENSORS_SUFFIX:
        problems = check_safetensors(path, size)
    else:
        problems = check_torch(path)
    for digest in filter(None, (expected_sha256, sidecar_sha256(path))):
        actual = sha256_of(path)
        if actual != digest.lower():
            problems.append(f"{path.name}: sha256 {actual[:12]}… does not match the recorded {digest[:12]}…")
            break
    return problems


def check_torch(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:1] == b"\x80":
        # The legacy (pre-1.6) format is a bare pickle stream: nothing to check without torch.
        return []
    if magic != b"PK\x03\x04":
        return [f"{path.name}: neither a torch.save zip archive nor a legacy pickle"]
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()  # reads every member and checks its CRC
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        if not _has_zip_end(path):  # the record a zip ends with: what a torn write loses first
            return [f"{path.name}: damaged zip archive (truncated: no end-of-central-directory record "
                    f"in its {path.stat().st_size} bytes)"]
        return [f"{path.name}: damaged zip archive ({exc})"]
    except Exception as exc:  # zlib errors surface as several types across versions
        return [f"{path.name}: damaged zip archive ({type(exc).__name__}: {exc})"]
    if bad is not None:
        return [f"{path.name}: member {bad} fails its CRC check"]
    if not any(n.endswith("data.pkl") for n in names):
        return [f"{path.name}: zip archive without data.pkl: not written by torch.save"]
    return []


def _has_zip_end(path: Path) -> bool:
    """Whether the end-of-central-directory record is in the last 64 KiB + 22 bytes (its
    furthest place, after the longest archive comment)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - (65535 + 22)))
        return b"PK\x05\x06" in fh.read()


def check_safetensors(path: Path, size: int) -> list[str]:
    name = path.name
    if size < 8:
        return [f"{name}: {size} bytes, shorter than the 8-byte header length"]
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            return [f"{name}: header length {header_len} does not fit in a {size}-byte file (truncated?)"]
        raw = fh.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return [f"{name}: header is not JSON ({exc})"]
    if not isinstance(header, dict):
        return [f"{name}: header is not a JSON object"]
    data_size = size - 8 - header_len
    spans = []
    for tensor, info in header.items():
        if tensor == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
            dtype = str(info["dtype"])
        except (KeyError, TypeError, ValueError):
            return [f"{name}: tensor {tensor!r} has no valid dtype/shape/data_offsets"]
        if not 0 <= begin <= end:
            return [f"{name}: tensor {tensor!r} has offsets {begin}..{end}"]
        if dtype in DTYPE_BYTES and end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            return [f"{name}: tensor {tensor!r} spans {end - begin} bytes, its {dtype}{shape} needs "
                    f"{math.prod(shape) * DTYPE_BYTES[dtype]}"]
        spans.append((begin, end, tensor))
    position = 0
    for begin, end, tensor in sorted(spans):
        if begin != position:
            return [f"{name}: tensor {tensor!r} starts at {begin}, expected {position} (gap or overlap)"]
        position = end
    if position != data_size:
        return [f"{name}: tensor data ends at byte {position} but the file holds {data_size} "
                f"({'truncated' if data_size < position else 'trailing bytes'})"]
    return []


def sidecar_sha256(path: Path) -> str | None:
    """The digest in `<file>.sha256` (`sha256sum` format or a bare digest), if there is one."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    try:
        text = sidecar.read_text().strip()
    except OSError:
        return None
    return text.split()[0].lower() if text else None


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
