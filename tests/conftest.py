import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run single-threaded: faster for tiny models, and identical results across machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
