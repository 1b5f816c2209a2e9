import os
import tempfile

import pytest
import torch


def pytest_configure(config):
    """Data the tests generate (MNIST-1D) is cached for this session only, never in ~/.cache."""
    os.environ.setdefault("RLSCHED_CACHE_DIR", tempfile.mkdtemp(prefix="rlsched-test-cache-"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run single-threaded: faster for tiny models, and identical results across machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
