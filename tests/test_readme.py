"""The README's examples run as written: every Python block in a fresh interpreter, and the
command-line block line by line through the installed ``rlsched`` executable."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.DOTALL)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def needs(code: str) -> list[str]:
    """The optional frameworks a block imports."""
    return [
        name for name in ("lightning", "transformers") if re.search(rf"^(import|from) {name}\b", code, re.M)
    ]


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_each_python_example_runs_as_written(code, tmp_path):
    for name in needs(code):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_readme_has_the_examples_it_promises():
    assert len(PYTHON) >= 3
    assert any("AdaptiveScheduler(" in code for code in PYTHON)
    assert any("rlsched.run(" in code for code in PYTHON)


def test_the_command_line_example_runs_as_written(tmp_path):
    block = next(code for lang, code in BLOCKS if lang == "bash" and "rlsched run --set" in code)
    executable = shutil.which("rlsched") or pytest.skip("the rlsched executable is not installed")
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "rlsched":
            continue  # tensorboard serves until stopped
        done = subprocess.run(
            [executable, *words[1:]], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
    assert (tmp_path / "runs" / "quick" / "result.json").is_file()
