import os
import shutil
import tempfile

import pytest
import torch

_CACHE: list[str] = []  # the cache folder this session made, removed at its end


def pytest_configure(config):
    """Data the tests generate (MNIST-1D) is cached for this session only, never in ~/.cache."""
    if "RLSCHED_CACHE_DIR" not in os.environ:
        _CACHE.append(tempfile.mkdtemp(prefix="rlsched-test-cache-"))
        os.environ["RLSCHED_CACHE_DIR"] = _CACHE[0]


def pytest_unconfigure(config):
    for path in _CACHE:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run single-threaded: faster for tiny models, and identical results across machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
