"""Terminal transitions (the bandit's): the TD target is r once per row, and the quantile
Huber loss at that single sample equals the loss at N copies of it."""

import pytest
import torch

from ramac.agents.common import terminal_targets
from ramac.nets.iqn import quantile_huber_loss

torch.set_num_threads(1)


def test_one_target_sample_gives_the_loss_of_n_equal_ones() -> None:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.tensor([[1.0], [-10.0], [3.0]])
    current = torch.randn(2, 3, 8, generator=gen)  # [E, B, N]
    taus = torch.rand(3, 8, generator=gen)
    one = terminal_targets(rewards, 8, "current")
    assert one.shape == (3, 1)
    n_copies = rewards.expand(3, 8)
    torch.testing.assert_close(
        quantile_huber_loss(current, taus, one), quantile_huber_loss(current, taus, n_copies)
    )
    # By hand for one row and one level: delta = r - z; rho = |tau - 1{delta < 0}| huber.
    z, tau, r = current[0, 1, 0].item(), taus[1, 0].item(), -10.0
    delta = r - z
    huber = 0.5 * delta**2 if abs(delta) <= 1 else abs(delta) - 0.5
    loss = quantile_huber_loss(current[:1, 1:2, :1], taus[1:2, :1], one[1:2])
    assert loss.item() == pytest.approx(abs(tau - (delta < 0)) * huber, rel=1e-6)


def test_the_public_pairing_keeps_n_target_samples() -> None:
    # tau_weighting="target" pairs level j with target j, so it needs all N of them.
    rewards = torch.tensor([[2.0], [0.5]])
    assert terminal_targets(rewards, 4, "target").shape == (2, 4)
