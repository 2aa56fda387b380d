"""Plain multilayer perceptron builder shared by actors, critics and baselines."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


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
