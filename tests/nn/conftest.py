import pytest
import torch


@pytest.fixture(autouse=True)
def float64_default():
    """Blocks build their constant buffers (Clebsch-Gordan bases) in the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
