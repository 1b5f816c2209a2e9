"""Atomic, pickle-free checkpoints: plain dicts of tensors and Python scalars."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "rlsched.core.files/1"


def atomic_write_bytes(path: Path, write) -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename into place.

    Never through a symbolic link: ``mkstemp`` creates its file exclusively (``O_EXCL``), and the
    rename replaces a link at ``path`` rather than the file it points to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a file we write follows the umask
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise DiskFull(path) from None
        raise


class DiskFull(OSError):
    """No space left on the device while writing ``path``; the run resumes once space is freed."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOSPC, "no space left on device", str(path))

    def __str__(self) -> str:
        return f"no space left on device while writing {self.filename}"


def append_bytes(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created if missing, following the umask), never through a link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise link_error(path) from None
        raise
    with os.fdopen(fd, "ab") as file:
        file.write(data)


def link_error(path: Path) -> ValueError:
    """The one error for a symbolic link where rlsched writes."""
    return ValueError(
        f"run_dir: {path} is a symbolic link; rlsched never writes through links in a run directory"
    )


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def finite(value: Any) -> Any:
    """Non-finite floats become None (JSON null), so written JSON is strict and compares equal."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def atomic_write_json(path: Path, data: Any) -> None:
    text = json.dumps(finite(data), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **state}, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; anything else raises one clear ``ValueError``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated, or a pickle of arbitrary objects
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"checkpoint: {path} is not a readable rlsched checkpoint ({reason[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint: {path} has format {found!r}, expected {CHECKPOINT_FORMAT!r}")
    return state
