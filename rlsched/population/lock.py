"""One writer per run directory: ``<run>/.lock``, held with ``flock`` and naming its holder.

The lock file holds one JSON line, ``{"host": ..., "pid": ..., "started": ...}``, and is created
exclusively (``O_EXCL``, never through a link). Whoever finds it already there:

- cannot take its ``flock``: the holder is alive; refused with one line naming the holder;
- can take it: the holder is gone (the kernel, or the NFS server, dropped its lock), so the lock
  is stale and taken over;
- on a file system without ``flock``: the content decides (best effort: two takers racing may both
  win); a holder on this host whose pid is gone is taken over, any other is obeyed, and the
  message says which file to remove.

A finished holder removes the file; a killed one leaves it for the next writer to take over.
Under ``torchrun`` rank 0 holds the lock for all ranks (:func:`hold`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from rlsched.core.files import link_error
from rlsched.population.comm import Comm
from rlsched.population.rundir import RunDir

log = logging.getLogger("rlsched")

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: host, process id and start time (UTC, ISO 8601)."""

    host: str
    pid: int
    started: str

    @classmethod
    def me(cls) -> Holder:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), started)

    @classmethod
    def read(cls, fd: int) -> Holder | None:
        """The holder a lock file names, or None when it names none (yet)."""
        try:
            data = json.loads(os.pread(fd, 4096, 0))
            return cls(str(data["host"]), int(data["pid"]), str(data["started"]))
        except (ValueError, KeyError, TypeError):
            return None

    def alive(self) -> bool | None:
        """Whether the process still runs; None when it runs on another host (no way to tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host} (since {self.started})"


class RunLock:
    """The lock file at ``path``; ``acquire`` raises one ``ValueError`` naming the holder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        for _ in range(10):  # another writer released or took over between our steps: look again
            if self._try():
                return
        raise ValueError(f"run_dir: {self.path.parent} is in use (its lock file {self.path} keeps changing)")

    def _try(self) -> bool:
        created, fd = self._open()
        if fd is None:
            return False
        try:
            flocked = _flock(fd)
            if flocked is None:  # held: the holder is alive
                raise self._busy(Holder.read(fd), hint=False)
            if flocked and not _same_file(fd, self.path):
                os.close(fd)  # the holder released and removed it meanwhile
                return False
            if not created:
                holder = Holder.read(fd)
                if not flocked and (holder is None or holder.alive() is not False):
                    raise self._busy(holder, hint=True)
                who = holder or "a process"
                log.warning("rlsched: %s: taking over the stale lock of %s, now gone", self.path.parent, who)
            data = (json.dumps(asdict(Holder.me())) + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except BaseException:
            if self._fd is None:
                os.close(fd)
            raise
        self._fd = fd
        return True

    def _open(self) -> tuple[bool, int | None]:
        """Create the lock file exclusively, or open the one there; never through a link."""
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                return True, os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False, os.open(self.path, flags)
        except FileNotFoundError:  # removed by its holder between our two opens
            return False, None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise link_error(self.path) from None
            raise

    def _busy(self, holder: Holder | None, hint: bool) -> ValueError:
        who = str(holder) if holder else "another process"
        message = f"run_dir: {self.path.parent} is in use by {who}; wait for it to finish"
        if hint:  # no flock here: the holder may be gone without our knowing
            message += f", or remove {self.path} if that process is gone"
        return ValueError(message)

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the lock; a no-op when not held."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock(fd: int) -> bool | None:
    """True: locked; None: another process holds it; False: this file system has no ``flock``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None
    except OSError as error:
        if error.errno in _NO_FLOCK:
            return False
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


@contextmanager
def hold(run_dir: RunDir, comm: Comm, *, new: bool = False, read_only: bool = False) -> Iterator[None]:
    """Rank 0 holds ``run_dir``'s lock for the block, after refusing any symbolic link in it.

    ``new``: make the directory, and refuse it if a run appeared there since the caller looked.
    ``read_only`` (replay): where the directory cannot be written, go on without the lock.
    A refusal is the same ``ValueError`` on every rank."""
    lock = RunLock(run_dir.lock_file)

    def take() -> None:
        run_dir.refuse_links()  # before anything is made in it
        if new:
            try:
                run_dir.path.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise ValueError(f"logdir: {run_dir.path} exists and is not a directory") from None
        try:
            lock.acquire()
        except OSError as error:
            if read_only and error.errno in _READ_ONLY:
                return
            raise ValueError(f"run_dir: cannot lock {run_dir.path} ({error.strerror})") from None
        try:
            run_dir.refuse_links()  # again, now that no other rlsched writes here
            if new and run_dir.exists():
                raise ValueError(
                    f"logdir: {run_dir.path} already holds a run; resume it or choose another name"
                )
        except BaseException:
            lock.release()
            raise

    comm.from_root(take)
    try:
        yield
    finally:
        lock.release()
