import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests may change the default generator's state or thread count; restore both."""
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    yield
    torch.set_rng_state(state)
    torch.set_num_threads(threads)
