"""Output buffers: right shape, dtype and layout at any size; the advice changes no value."""

import pytest
import torch

from dropkit import rng
from dropkit.kernels import _memory, cpu, reference


@pytest.mark.parametrize("numel", [0, 5, (1 << 20) + 3, (1 << 23) + 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_empty_output_matches_like(numel, dtype):
    like = torch.zeros(numel, dtype=dtype)[::1]
    out = _memory.empty_output(like)
    assert out.shape == like.shape and out.dtype == dtype and out.is_contiguous()
    assert out.data_ptr() != like.data_ptr() or numel == 0


def test_large_output_equals_reference():
    x = torch.randn((1 << 23) + 5)  # 32 MiB and more: advised to use huge pages
    threshold = rng.keep_threshold(0.5)
    want = reference.apply_keep_mask(x, 9, 0, threshold, 2.0)
    assert torch.equal(cpu.apply_keep_mask(x, 9, 0, threshold, 2.0), want)
