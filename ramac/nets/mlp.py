"""Plain multilayer perceptron builder shared by actors, critics and baselines."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Mish(nn.Module):
    """Mish, x tanh(softplus(x)) (Misra 2019), composed from softplus and tanh.

    The same function as ``nn.Mish`` (outputs and gradients agree to float32 rounding,
    tests/nets/test_common.py), but PyTorch's fused CPU kernel is the slower one: forward
    plus backward on a [640, 128] batch (a 5-seed stack of the bandit's denoiser) takes
    ~0.82 ms fused and ~0.47 ms composed, and the diffusion and flow actors call it
    4 x T times per sampled action (benchmarks/bench_bandit.py, case ``nn.Mish``).
    """

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.tanh(F.softplus(x))


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Build Linear+activation per hidden width, then a final Linear with no output activation.

    Output activations (tanh squashing, clamping) belong to the caller, so one builder serves
    deterministic actors, value heads and generative denoisers alike.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
