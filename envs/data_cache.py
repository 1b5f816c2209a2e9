"""An on-disk cache for generated data sets, so a slow generator runs once per machine.

Entries live in ``$RLSCHED_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/rlsched``, else
``~/.cache/rlsched``. Each is a plain dict of tensors saved with ``torch.save``, written to a
temporary file and renamed into place (so a concurrent process never reads half a file), and
loaded with ``weights_only=True``. A missing, unreadable or malformed entry is made again; a folder
that cannot be written costs only the time to generate the data again next time.

>>> import tempfile, torch
>>> from rlsched.envs.data_cache import cached
>>> folder = tempfile.mkdtemp()
>>> cached("example", lambda: {"x": torch.zeros(2)}, folder)["x"].shape
torch.Size([2])
>>> cached("example", lambda: {"x": torch.ones(5)}, folder)["x"].shape  # read back, not made
torch.Size([2])
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from rlsched.core.files import atomic_write_bytes

CACHE_DIR_VARIABLE = "RLSCHED_CACHE_DIR"
_UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)

Tensors = dict[str, torch.Tensor]


def cache_dir() -> Path:
    """``$RLSCHED_CACHE_DIR``, else ``$XDG_CACHE_HOME/rlsched``, else ``~/.cache/rlsched``."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rlsched"


def cached(
    key: str,
    make: Callable[[], Tensors],
    directory: str | Path | None = None,
    valid: Callable[[Tensors], bool] = lambda data: True,
) -> Tensors:
    """``make()``, or the entry ``<directory>/<key>.pt`` it saved before (``directory``: :func:`cache_dir`).

    ``key`` must name everything the data depends on (generator and its version, seed, sizes),
    since an entry is never compared with fresh data. An entry that is not a dict of tensors, or
    that ``valid`` rejects, is made and saved again.
    """
    path = Path(directory if directory is not None else cache_dir()) / f"{key}.pt"
    try:
        data = torch.load(path, weights_only=True)
        if isinstance(data, dict) and all(isinstance(v, torch.Tensor) for v in data.values()) and valid(data):
            return data
    except _UNREADABLE:
        pass  # missing or damaged: made again below
    data = make()
    _save(path, data)
    return data


def _save(path: Path, data: Tensors) -> None:
    """Save atomically (:func:`rlsched.core.files.atomic_write_bytes`); a folder that cannot be
    written (read-only, full) keeps nothing, and the data is still returned."""
    # clone: a slice would otherwise save the whole tensor it is a view of
    tensors = {k: v.clone() for k, v in data.items()}
    try:
        atomic_write_bytes(path, lambda f: torch.save(tensors, f))
    except OSError:
        pass
