"""Every file cnnzoo writes, and every weight or checkpoint file it reads, goes through here.

Writing: ``atomic_write`` puts the bytes into a temporary file beside the
target, fsyncs it and renames it over the target (atomic on POSIX). On any
failure (a full disk included, where ``torch.save`` raises ``RuntimeError``
rather than ``OSError``) the temporary file is removed, the previous file is
left whole and one ``WriteError`` says what, where, and how much space is
needed.

Reading: ``load_file(path)`` is the one function that reads weights from any
file: a safetensors file (cnnzoo's, or another tool's), a cnnzoo checkpoint
(``last.ckpt``) or a torch file holding a state dict. Nothing is trusted
before it is checked:

- torch files are unpickled with ``weights_only=True`` (tensors and plain data,
  never code), and a cnnzoo checkpoint's content is compared with the SHA-256
  stored inside it, so a flipped bit is reported instead of loaded;
- a safetensors header is parsed and validated here (dtypes, shapes, offsets
  against the file's real size) before the safetensors library reads a byte
  of data, so a crafted header cannot make cnnzoo allocate what it claims.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import torch
from torch import Tensor


class FileError(RuntimeError):
    """A file that cannot be written or safely read; the message says which, why and what to do."""

    exit_code = 2  # the command line's status: the user's file or disk, not a bug


class WriteError(FileError):
    """A write that failed (full disk, no permission); the previous file at that path is unchanged."""


class CheckpointError(FileError):
    """A weight or checkpoint file that is missing, damaged, foreign or unsafe."""


# ----------------------------------------------------------------------------- writing

def human(n: float) -> str:
    """A byte count for people: 1.5 MB, 320 kB."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


class _Sink:
    """The temporary file as the writer sees it: remembers the OSError (e.g. ENOSPC) behind a library's own error."""

    def __init__(self, f: BinaryIO):
        self.f, self.written, self.error = f, 0, None

    def write(self, data) -> int:
        try:
            n = self.f.write(data)
        except OSError as e:
            self.error = e
            raise
        self.written += len(data) if n is None else n
        return len(data) if n is None else n

    def flush(self) -> None:
        self.f.flush()


def _os_error(error: BaseException, sink: _Sink | None) -> OSError | None:
    """The OSError under ``error``: itself, one in its cause chain, or the one the sink saw."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return sink.error if sink is not None else None


def _write_failed(path: Path, error: BaseException, sink: _Sink | None, size: int | None) -> WriteError | None:
    """The WriteError for a failed write, or None when the failure was not the file system's (a bug: re-raised)."""
    cause = _os_error(error, sink)
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    need = size if size is not None else (sink.written if sink is not None else None)
    full = (cause is not None and cause.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        free is not None and need is not None and free < need)
    if full:
        amount = (f"{human(need)} needed" if size is not None else f"more than {human(need)} needed") \
            if need is not None else "more space needed"
        reason = f"the disk is full ({amount}, {human(free) if free is not None else 'unknown'} free in {path.parent})"
    elif cause is not None:
        reason = cause.strerror or str(cause)
    else:
        return None
    kept = f"the previous {path.name} is kept" if path.exists() else f"no earlier {path.name} existed"
    return WriteError(f"could not write {path}: {reason}; {kept}")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove_stale_temps(path: Path) -> None:
    """Temporary files of this target left by writers that were killed (their process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2: -len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except OSError:
            pass


@contextlib.contextmanager
def atomic_path(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (ONNX); renamed over ``path`` at the end.

    ``size``: the bytes about to be written, when known, for the "space needed" of a full disk.
    """
    path = Path(path)
    tmp = _temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and (failed := _write_failed(path, e, None, size)):
            raise failed from None
        raise
    _remove_stale_temps(path)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any], size: int | None = None) -> None:
    """Write ``path`` through ``write(file)`` so that it is either the old file or the complete new one.

    ``size``: the bytes about to be written, when known, for the "space needed" of a full disk.
    Any failure (``OSError``, or a library's ``RuntimeError`` over one) is a ``WriteError``.
    """
    path = Path(path)
    tmp = _temp_path(path)
    sink = None
    try:
        with open(tmp, "wb") as f:
            sink = _Sink(f)
            write(sink)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except BaseException as e:  # a kill leaves the temp file; anything else removes it
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and (failed := _write_failed(path, e, sink, size)):
            raise failed from None
        raise
    _remove_stale_temps(path)


def write_bytes(path: str | Path, data: bytes) -> None:
    """``atomic_write`` of bytes already in memory."""
    atomic_write(path, lambda f: f.write(data), size=len(data))


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); some file systems refuse fsync on folders, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- checksums

CHECKSUM_KEY = "checksum"  # a cnnzoo checkpoint's SHA-256 of its own content


def content_digest(obj: Any) -> str:
    """SHA-256 of nested tensors and plain data, as loaded back (dict order, tensor dtype, shape and bytes)."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(x.shape)}".encode())
            h.update(t.view(torch.uint8).numpy() if t.numel() else b"")
        elif isinstance(x, Mapping):
            h.update(b"{")
            for k, v in x.items():
                h.update(repr(k).encode("utf-8", "backslashreplace"))
                feed(v)
            h.update(b"}")
        elif isinstance(x, (list, tuple)):  # one and the same: pickling may not keep which
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode("utf-8", "backslashreplace"))

    feed(obj)
    return h.hexdigest()


def tensor_bytes(obj: Any) -> int:
    """The bytes of all tensors in nested data: about what a torch.save of it takes."""
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


# ----------------------------------------------------------------------------- torch files

def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint atomically, with the SHA-256 of its content inside it.

    ``state`` holds tensors and plain Python data only (it is read back with ``weights_only=True``).
    """
    state = {**state, CHECKSUM_KEY: content_digest(state)}
    atomic_write(path, lambda f: torch.save(state, f), size=tensor_bytes(state) + 64 * 1024)


def _refusal(path: Path, error: Exception) -> CheckpointError | None:
    """The 'this could run code' refusal, when torch's weights-only unpickler met a global it does not allow."""
    lines = [line.strip() for line in str(error).splitlines()]
    found = next((line for line in lines if "GLOBAL" in line), None)
    if found is None:
        return None
    return CheckpointError(f"refusing to load {path}: it holds Python objects other than tensors and plain data,"
                           f" which could run code when unpickled ({found}); cnnzoo only reads weights-only files")


def _torch_load(path: Path) -> Any:
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): it is not a checkpoint (cut off while being written?)")
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every way torch fails to read a file means the same to the user
        if isinstance(e, pickle.UnpicklingError) and (refused := _refusal(path, e)):
            raise refused from None
        if not head.startswith(b"PK") and not head.startswith(b"\x80"):  # neither zip nor legacy pickle
            raise CheckpointError(f"{path} is not a torch checkpoint ({human(size)} that do not start like one)"
                                  ) from None
        detail = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"{path} is damaged or truncated ({human(size)}; torch: {detail[:160]})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint (``last.ckpt``) read with ``weights_only=True``, its checksum verified."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" + (" (it is not a regular file)"
                                                                     if path.exists() else ""))
    state = _torch_load(path)
    if isinstance(state, dict) and CHECKSUM_KEY in state:
        stored = state.pop(CHECKSUM_KEY)
        if stored != content_digest(state):
            raise CheckpointError(f"{path} is damaged: its content does not match the checksum stored in it"
                                  " (a changed bit on disk or in transfer); use an intact copy")
    return state


# ----------------------------------------------------------------------------- safetensors

# safetensors dtype -> (bytes per element, torch dtype name)
ST_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER = 100 * 2**20  # the safetensors format's own limit


def read_safetensors_header(path: str | Path) -> tuple[dict[str, dict], dict[str, str]]:
    """The tensor entries and ``__metadata__`` of a safetensors file, checked against the file's real size.

    Reads the header only; nothing it declares is allocated. Raises CheckpointError saying what is wrong.
    """
    path = Path(path)
    size = path.stat().st_size

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid safetensors file: {why}")

    if size < 8:
        raise bad(f"it holds {size} bytes, fewer than the 8-byte header length")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(MAX_HEADER, size - 8):
            raise bad(f"its header claims {human(n)} but the file holds {human(size)} (truncated or not safetensors)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("its __metadata__ is not a mapping of strings")
    data_len = size - 8 - n
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or {"dtype", "shape", "data_offsets"} - set(entry):
            raise bad(f"tensor {name!r} lacks dtype, shape or data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in ST_DTYPES:
            raise bad(f"tensor {name!r} has dtype {dtype!r}; readable dtypes: {', '.join(ST_DTYPES)}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise bad(f"tensor {name!r} has shape {shape!r}, not a list of sizes >= 0")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise bad(f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end]")
        begin, end = offsets
        nbytes = math.prod(shape) * ST_DTYPES[dtype]  # Python ints: a huge shape cannot overflow
        if not 0 <= begin <= end <= data_len:
            raise bad(f"tensor {name!r} lies at bytes {begin}..{end}, outside the {human(data_len)} of data the file"
                      " holds")
        if end - begin != nbytes:
            raise bad(f"tensor {name!r} declares {dtype} {shape} ({human(nbytes)}) but spans {human(end - begin)}")
        spans.append((begin, end, name))
    spans.sort()
    for (b0, e0, a), (b1, e1, b) in zip(spans, spans[1:]):
        if b1 < e0:
            raise bad(f"tensors {a!r} and {b!r} overlap (bytes {b0}..{e0} and {b1}..{e1})")
    return header, metadata


def _metadata_value(text: str) -> Any:
    """cnnzoo writes JSON values; other tools write plain strings (Hugging Face: ``{"format": "pt"}``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors and metadata of a safetensors file, header validated first; a cnnzoo checksum is verified."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    entries, raw_meta = read_safetensors_header(path)
    try:
        with safe_open(path, framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in entries}
    except (SafetensorError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file: {e}") from None
    meta = {k: _metadata_value(v) for k, v in raw_meta.items()}
    stored = meta.pop(CHECKSUM_KEY, None)
    if stored is not None and stored != content_digest(dict(sorted(tensors.items()))):
        raise CheckpointError(f"{path} is damaged: its tensors do not match the checksum stored in it"
                              " (a changed bit on disk or in transfer); use an intact copy")
    return tensors, meta


def save_safetensors(path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, Any] | None = None
                     ) -> None:
    """Tensors as safetensors, atomically; ``metadata`` (JSON-able values) and a checksum go into the header."""
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    header[CHECKSUM_KEY] = json.dumps(content_digest(dict(sorted(tensors.items()))))
    write_bytes(path, st_save(tensors, metadata=header))


# ----------------------------------------------------------------------------- any weight file

def _state_dict_of(obj: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The weights inside a loaded torch file, and what it says about them."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "meta" in obj:  # a cnnzoo checkpoint
        return obj["model"], {"config": obj.get("config", {}), **obj["meta"]}
    for key in ("model", "state_dict"):  # common wrappers (timm's and others' training checkpoints)
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds {'an empty dict' if obj == {} else f'a {type(obj).__name__}'},"
                              " not a state dict of weights")
    strays = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if strays:
        raise CheckpointError(f"{path} is not a state dict: {len(strays)} entries are not tensors"
                              f" ({', '.join(map(str, strays[:5]))})")
    return obj, {}


def load_file(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Weights and metadata from any weight or checkpoint file, every one checked before it is trusted.

    - ``.safetensors``: cnnzoo's (metadata: model name and config) or another tool's (metadata as given);
    - a cnnzoo checkpoint (``last.ckpt``): its model, with ``config`` and the run's metadata;
    - any other torch file holding a state dict (directly, or under ``model`` / ``state_dict``).
    A DDP ``module.`` prefix is dropped. Every problem is a CheckpointError of one line.
    """
    path = Path(path)
    if path.is_dir() and (path / "last.ckpt").is_file():
        path = path / "last.ckpt"
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise CheckpointError(f"weight file {path} {what}; give a .safetensors, .ckpt or .pt file (or a run folder)")
    with open(path, "rb") as f:
        head = f.read(9)
    if path.suffix == ".safetensors" or (head[8:9] == b"{" and not head.startswith(b"PK")):  # length, then JSON
        state, meta = read_safetensors(path)
    else:
        state, meta = _state_dict_of(load_checkpoint(path), path)
    return {k.removeprefix("module."): v for k, v in state.items()}, meta
