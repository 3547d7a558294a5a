"""Fixtures: forced Bernoulli draws, how a peer's mask is given (the peers themselves come from
``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch


@pytest.fixture(scope="session")
def forced_bernoulli():
    """``with forced_bernoulli(*values):`` — inside the block, ``Tensor.bernoulli_`` fills its
    tensor with the next of ``values`` instead of drawing: how a peer's mask is given."""

    @contextlib.contextmanager
    def force(*values: torch.Tensor):
        queue = list(values)

        def fake(self, p=0.5, *, generator=None):
            if not queue:
                raise AssertionError("more bernoulli_ calls than forced masks")
            value = queue.pop(0)
            assert value.shape == self.shape, (value.shape, self.shape)
            return self.copy_(value)

        with mock.patch.object(torch.Tensor, "bernoulli_", fake):
            yield
        assert not queue, "a forced mask was not used"

    return force
