"""The IBNorm rewrite the OpenVINO engine converts: the same function as IBNorm, without its channel
split and concatenation."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from worker.engines.openvino_engine import FoldedIBNorm, folded
from worker.modnet import IBNorm, MODNet


def _trained_like(channels: int, seed: int) -> IBNorm:
    """An IBNorm whose batch-norm half has statistics and affine parameters far from the identity."""
    generator = torch.Generator().manual_seed(seed)
    norm = IBNorm(channels)
    half = norm.bnorm_channels
    with torch.no_grad():
        norm.bnorm.running_mean.copy_(torch.randn(half, generator=generator) * 3)
        norm.bnorm.running_var.copy_(torch.rand(half, generator=generator) * 5 + 0.01)
        norm.bnorm.weight.copy_(torch.randn(half, generator=generator))
        norm.bnorm.bias.copy_(torch.randn(half, generator=generator))
    return norm.eval()


@pytest.mark.parametrize("channels", [2, 5, 32, 64])
def test_the_folded_norm_is_ibnorm(channels: int) -> None:
    norm = _trained_like(channels, seed=channels)
    generator = torch.Generator().manual_seed(100 + channels)
    # A batch of two with different statistics per sample and per channel, one channel constant.
    x = torch.randn(2, channels, 9, 13, generator=generator) * torch.linspace(0.5, 4, channels).view(1, -1, 1, 1)
    x = x + torch.tensor([[-3.0], [7.0]]).view(2, 1, 1, 1)
    x[:, -1] = 2.5
    with torch.no_grad():
        expected, actual = norm(x), FoldedIBNorm(norm)(x)
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-5)


def test_folding_replaces_every_ibnorm_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = MODNet().eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    copy = folded(model)
    assert not any(isinstance(module, IBNorm) for module in copy.modules())
    assert sum(isinstance(module, FoldedIBNorm) for module in copy.modules()) == sum(
        isinstance(module, IBNorm) for module in model.modules()
    )
    assert sum(isinstance(module, IBNorm) for module in model.modules()) > 0
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x), rtol=0, atol=1e-4)


def test_the_converted_graph_has_no_ibnorm_split_or_concatenation() -> None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("openvino is required when CI=true")
        pytest.skip("the openvino package is not installed")
    from worker.engines.openvino_engine import convert

    torch.manual_seed(0)
    model = MODNet().eval()

    def count(graph: Any, kind: str) -> int:
        return sum(op.get_type_name() == kind for op in graph.get_ops())

    as_traced, rewritten = convert(model, fold=False), convert(model)
    # Each IBNorm on the inference path is one MVN (its instance norm) in both graphs; traced as it is,
    # it also slices the channels twice and concatenates once.
    norms = count(as_traced, "MVN")
    assert norms >= 16
    assert count(rewritten, "MVN") == norms
    assert count(as_traced, "Slice") == 2 * norms
    assert count(rewritten, "Slice") == 0
    assert count(rewritten, "Concat") == count(as_traced, "Concat") - norms
