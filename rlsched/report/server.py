"""Serve a log directory with the real ``tensorboard``, for tests and screenshots."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def tensorboard_server(
    logdir: str | Path, *, timeout: float = 60.0, load_fast: bool = False
) -> Iterator[str]:
    """Serve ``logdir`` with the real ``tensorboard`` on a free loopback port; yields its base URL
    once ``/data/runs`` answers, and stops the server on exit. ``load_fast``: read the logdir with
    the Rust data server (the ``tensorboard-data-server`` binary) instead of the Python loader.

    >>> with tensorboard_server("runs") as url:  # doctest: +SKIP
    ...     print(url)
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        f"--load_fast={str(load_fast).lower()}",
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "/data/runs", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"tensorboard did not start on {url} within {timeout:g} s") from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
