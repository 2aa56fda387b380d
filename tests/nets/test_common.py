"""Shared blocks: mlp layout, Polyak updates, EMA, sinusoidal time embedding."""

import math

import pytest
import torch
from torch import nn

from ramac.nets.common import EMA, SinusoidalTimeEmbedding, polyak_update
from ramac.nets.mlp import Mish, mlp

torch.set_num_threads(1)


def test_mlp_layout() -> None:
    net = mlp(3, [8, 5], 2, activation=nn.Tanh)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert (net[0].in_features, net[0].out_features) == (3, 8)
    assert (net[4].in_features, net[4].out_features) == (5, 2)
    assert net(torch.zeros(7, 3)).shape == (7, 2)
    assert [type(m) for m in mlp(3, [], 2)] == [nn.Linear]


def test_mish_equals_the_fused_kernel_in_value_and_gradient() -> None:
    # Mish is x tanh(softplus(x)); softplus switches to x above 20 and tanh saturates, so
    # check far tails as well as the bend near 0 (Mish(-1.19...) is its minimum, ~-0.3088).
    x = torch.cat([torch.linspace(-30.0, 30.0, 601), torch.tensor([-1.1924, 0.0, 1e-4])])
    ours, fused = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = Mish()(ours)
    torch.testing.assert_close(y, nn.functional.mish(fused), rtol=1e-6, atol=1e-6)
    assert y.min().item() == pytest.approx(-0.30884, abs=1e-4)
    (grad,) = torch.autograd.grad(y.sum(), ours)
    (grad_fused,) = torch.autograd.grad(nn.functional.mish(fused).sum(), fused)
    torch.testing.assert_close(grad, grad_fused, rtol=1e-5, atol=1e-6)
    assert grad[-3].abs().item() < 1e-3  # zero slope at the minimum


def test_polyak_update_values_and_buffers() -> None:
    target, source = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        target.weight.fill_(0.0)
        source.weight.fill_(1.0)
        source.running_mean.fill_(5.0)
    polyak_update(target, source, tau=0.25)
    torch.testing.assert_close(target.weight, torch.full((3,), 0.25))
    torch.testing.assert_close(target.running_mean, torch.full((3,), 5.0))  # copied
    assert target.weight.grad is None
    with pytest.raises(ValueError):
        polyak_update(target, source, tau=1.5)


def test_sinusoidal_embedding_matches_formula() -> None:
    # docs/reference-code.md, "RADAC", "Denoiser": dim 16 -> freqs exp(-k ln(1e4)/7), k=0..7
    emb = SinusoidalTimeEmbedding(16)
    t = torch.tensor([0.0, 1.0, 3.0])
    out = emb(t)
    assert out.shape == (3, 16)
    torch.testing.assert_close(out[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    freqs = [math.exp(-k * math.log(1e4) / 7) for k in range(8)]
    expected = [math.sin(3.0 * f) for f in freqs] + [math.cos(3.0 * f) for f in freqs]
    torch.testing.assert_close(out[2], torch.tensor(expected))
    assert freqs[-1] == pytest.approx(1e-4)
    # Integer step indices are cast to float.
    torch.testing.assert_close(emb(torch.tensor([3])), out[2:])
    # docs/reference-code.md, "RAFMAC", "Networks": dim 4 gives frequencies 1 and 1e-4.
    torch.testing.assert_close(SinusoidalTimeEmbedding(4).freqs, torch.tensor([1.0, 1e-4]))
    with pytest.raises(ValueError):
        SinusoidalTimeEmbedding(5)


def test_ema_update_reset_and_state_dict() -> None:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    assert all(not p.requires_grad for p in ema.model.parameters())
    assert ema.model is not model
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))

    other = EMA(nn.Linear(2, 1), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9
    torch.testing.assert_close(other.model.weight, ema.model.weight)

    ema.reset(model)
    torch.testing.assert_close(ema.model.weight, model.weight)
