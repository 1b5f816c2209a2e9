"""Retake the README's TensorBoard screenshots of a PBT run, with headless Chromium.

Runs the default experiment (``rlsched run``) into a temporary log directory unless
``--logdir`` points at existing runs, serves it with TensorBoard on a free loopback port, and
saves ``docs/tensorboard-custom-scalars.png`` (every member's LR, batch size and val loss) and
``docs/tensorboard-hparams.png``. Needs Debian's ``chromium`` package.

    python experiments/screenshot_tensorboard.py [--logdir runs] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlsched.report.server import tensorboard_server

ROOT = Path(__file__).resolve().parents[1]
VIEWS = {
    "tensorboard-custom-scalars.png": "#custom_scalars",
    "tensorboard-hparams.png": "#hparams",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", help="existing log directory (default: run the default experiment)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    logdir = args.logdir
    if logdir is None:
        logdir = tempfile.mkdtemp(prefix="rlsched-shot-")
        subprocess.run(
            [sys.executable, "-m", "rlsched", "run", "--quiet", "--set", f"logdir={logdir!r}"], check=True
        )
    with tensorboard_server(logdir) as url:
        time.sleep(3)  # let TensorBoard finish its first load of the event files
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for name, view in VIEWS.items():
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [
                        args.chromium,
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        f"--user-data-dir={profile}",
                        "--hide-scrollbars",
                        "--window-size=1500,1000",
                        "--virtual-time-budget=15000",
                        f"--screenshot={Path(args.out) / name}",
                        url + "/" + view,
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=120,
                )
            print(f"wrote {Path(args.out) / name}")


if __name__ == "__main__":
    main()
