"""IQN critic ensemble and the quantile Huber loss, checked against hand-computed answers."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import optimize, stats

from ramac.nets.iqn import IQNEnsemble, cosine_embedding, quantile_huber_loss

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 3, 2


def small_critic(n_critics: int = 2) -> IQNEnsemble:
    return IQNEnsemble(
        OBS_DIM, ACT_DIM, n_critics=n_critics, hidden=16, embed_dim=8, n_cos=6, head_hidden=12
    )


def test_cosine_embedding_values() -> None:
    taus = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    emb = cosine_embedding(taus, 3)
    assert emb.shape == (2, 2, 3)
    # cos(pi * i * tau), i = 0, 1, 2
    torch.testing.assert_close(emb[0, 1], torch.tensor([1.0, math.cos(math.pi / 4), 0.0]))
    torch.testing.assert_close(emb[1, 1], torch.tensor([1.0, -1.0, 1.0]))


def test_quantile_huber_loss_hand_computed_2x2() -> None:
    current = torch.tensor([[0.0, 1.0]])  # B=1, N=2
    taus = torch.tensor([[0.25, 0.75]])
    target = torch.tensor([[0.5, 3.0]])  # M=2
    # kappa = 1, rho = |tau_i - 1{d<0}| * huber(d), d = target_j - current_i:
    #   i=0 (tau .25): d=0.5 -> .25 * .125 = .03125 ; d=3 (linear) -> .25 * 2.5 = .625
    #   i=1 (tau .75): d=-.5 -> .25 * .125 = .03125 ; d=2 (linear) -> .75 * 1.5 = 1.125
    # mean over j: .328125, .578125; sum over i: .90625; mean over the batch of one.
    # (Weighting by the target's tau instead, as the public RADAC code does, gives 1.5625.)
    loss = quantile_huber_loss(current, taus, target, kappa=1.0)
    assert loss.item() == pytest.approx(0.90625)
    # kappa = 2: huber_2(3) = 2 (3 - 1) = 4, huber_2(2) = 0.5 * 4 = 2 (quadratic), then / 2:
    #   i=0: (.03125 + .25 * 4) / 2 = .515625 ; i=1: (.03125 + .75 * 2) / 2 = .765625
    #   sum 1.28125, divided by kappa -> .640625
    assert quantile_huber_loss(current, taus, target, kappa=2.0).item() == pytest.approx(0.640625)


def test_target_weighting_reproduces_the_public_loss_hand_computed_2x2() -> None:
    """tau_weighting="target": the public RADAC code's bug (agents/radac.py of
    KaiFukazawa/RAMAC @ f2c1ed6, ``quantile_huber_loss``), which takes the Huber weight's
    level at the TARGET's index j from the levels drawn for the current quantiles."""
    current = torch.tensor([[0.0, 1.0]])  # B=1, N=2, at levels tau = (.25, .75)
    taus = torch.tensor([[0.25, 0.75]])
    target = torch.tensor([[0.5, 3.0]])  # M=2
    # rho_ij = |tau_j - 1{d_ij <= 0}| * smooth_l1(d_ij), d_ij = target_j - current_i:
    #   i=0: j=0 d=.5 -> tau_0 .25 * .125 = .03125 ; j=1 d=3 -> tau_1 .75 * 2.5 = 1.875
    #   i=1: j=0 d=-.5 -> |.25 - 1| .75 * .125 = .09375 ; j=1 d=2 -> tau_1 .75 * 1.5 = 1.125
    # The public reduction: sum over targets j (1.90625, 1.21875), mean over i -> 1.5625
    # (this loss: mean over j, sum over i, the same total when N = M).
    loss = quantile_huber_loss(current, taus, target, tau_weighting="target")
    assert loss.item() == pytest.approx(1.5625)
    assert quantile_huber_loss(current, taus, target).item() == pytest.approx(0.90625)


def public_loss_loops(current, taus, target) -> float:
    """The public code's loss written out pair by pair (one critic, N = M levels):
    mean over batch and i of sum over j of |tau_j - 1{y_j - z_i <= 0}| smooth_l1(y_j - z_i)."""
    b, n = current.shape
    total = 0.0
    for row in range(b):
        for i in range(n):
            for j in range(n):
                d = float(target[row, j] - current[row, i])
                huber = 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5
                total += abs(float(taus[row, j]) - (d <= 0)) * huber
    return total / (b * n)


def test_target_weighting_matches_the_public_formula_on_random_input() -> None:
    gen = torch.Generator().manual_seed(0)
    current = 2 * torch.randn(3, 4, generator=gen)
    taus = torch.rand(3, 4, generator=gen)
    target = 2 * torch.randn(3, 4, generator=gen)
    loss = quantile_huber_loss(current, taus, target, tau_weighting="target")
    assert loss.item() == pytest.approx(public_loss_loops(current, taus, target), rel=1e-6)
    # Two ensemble members: each gets its own full-scale loss, summed.
    stacked = torch.stack([current, current + 1.0])
    both = quantile_huber_loss(stacked, taus, target, tau_weighting="target")
    expected = public_loss_loops(current, taus, target) + public_loss_loops(
        current + 1.0, taus, target
    )
    assert both.item() == pytest.approx(expected, rel=1e-6)


def test_tau_weighting_mistakes_are_value_errors() -> None:
    current, taus = torch.zeros(2, 3), torch.rand(2, 3)
    with pytest.raises(ValueError, match="as many levels as targets"):
        quantile_huber_loss(current, taus, torch.zeros(2, 5), tau_weighting="target")
    with pytest.raises(ValueError, match="tau_weighting"):
        quantile_huber_loss(current, taus, torch.zeros(2, 3), tau_weighting="median")


def test_quantile_huber_loss_reduction() -> None:
    gen = torch.Generator().manual_seed(0)
    current = torch.randn(4, 5, generator=gen)
    taus = torch.rand(4, 5, generator=gen)
    target = torch.randn(4, 7, generator=gen)
    single = quantile_huber_loss(current, taus, target)
    # Mean over the batch: duplicating rows changes nothing.
    doubled = quantile_huber_loss(current.repeat(2, 1), taus.repeat(2, 1), target.repeat(2, 1))
    torch.testing.assert_close(doubled, single)
    # Sum over leading (ensemble) dims: each member gets the full-scale loss.
    stacked = quantile_huber_loss(torch.stack([current, current, current]), taus, target)
    torch.testing.assert_close(stacked, 3 * single)
    # Taus shared by the batch ([N]) broadcast like an expanded [B, N].
    shared = quantile_huber_loss(current, taus[0], target)
    torch.testing.assert_close(shared, quantile_huber_loss(current, taus[0].expand(4, 5), target))


def test_forward_shapes_and_shared_taus() -> None:
    torch.manual_seed(0)
    critic = small_critic(n_critics=3)
    assert critic.n_critics == 3
    obs, act = torch.randn(4, OBS_DIM), torch.randn(4, ACT_DIM)
    taus = torch.rand(5)
    out = critic(obs, act, taus)
    assert out.shape == (3, 4, 5)
    assert critic(obs, act, torch.rand(4, 5)).shape == (3, 4, 5)
    torch.testing.assert_close(critic(obs, act, taus.expand(4, 5)), out)
    feats = critic.features(obs, act)
    assert feats.shape == (3, 4, 8)
    torch.testing.assert_close(critic.quantiles(feats, taus), out)
    with pytest.raises(ValueError):
        critic(obs, act, torch.rand(3, 4, 5))


def test_state_action_features_computed_once_per_pair() -> None:
    critic = small_critic()
    rows_seen: dict[str, list[int]] = {}

    def record(name: str):
        def hook(module, inputs, output) -> None:
            rows_seen.setdefault(name, []).append(inputs[0].shape[-2])

        return hook

    for name in ("state_layer", "action_layer", "joint_layer"):
        getattr(critic, name).register_forward_hook(record(name))
    batch, n_taus = 6, 10
    critic(torch.randn(batch, OBS_DIM), torch.randn(batch, ACT_DIM), torch.rand(batch, n_taus))
    # One call per layer, each on B rows (not B * N).
    assert rows_seen == {"state_layer": [batch], "action_layer": [batch], "joint_layer": [batch]}


def test_every_parameter_gets_gradient() -> None:
    torch.manual_seed(0)
    critic = small_critic()
    obs, act = torch.randn(32, OBS_DIM), torch.randn(32, ACT_DIM)
    taus = torch.rand(32, 8)
    loss = quantile_huber_loss(critic(obs, act, taus), taus, torch.randn(32, 8))
    loss.backward()
    for name, param in critic.named_parameters():
        assert param.grad is not None, name
        for member in range(critic.n_critics):  # every critic's slice, not just the tensor
            assert param.grad[member].abs().sum() > 0, (name, member)


def reference_single_critic(
    critic: IQNEnsemble, e: int, obs: torch.Tensor, act: torch.Tensor, taus: torch.Tensor
) -> torch.Tensor:
    """Critic e evaluated alone, the straightforward way: repeat (s, a) for every tau."""

    def linear(layer, x):
        return x @ layer.weight[e] + layer.bias[e, 0]

    batch, n = taus.shape
    s = obs.repeat_interleave(n, dim=0)
    a = act.repeat_interleave(n, dim=0)
    phi = F.relu(
        linear(
            critic.joint_layer,
            torch.cat(
                [F.relu(linear(critic.state_layer, s)), F.relu(linear(critic.action_layer, a))], -1
            ),
        )
    )
    tau_feat = torch.cos(math.pi * torch.arange(critic.n_cos) * taus.reshape(-1, 1))
    psi = F.relu(linear(critic.tau_layer, tau_feat))
    h = F.relu(linear(critic.head_hidden, phi * psi))
    return linear(critic.head_out, h).reshape(batch, n)


def test_batched_ensemble_matches_members_and_members_differ() -> None:
    torch.manual_seed(0)
    critic = small_critic(n_critics=3)
    obs, act, taus = torch.randn(5, OBS_DIM), torch.randn(5, ACT_DIM), torch.rand(5, 4)
    out = critic(obs, act, taus)
    for e in range(3):
        torch.testing.assert_close(out[e], reference_single_critic(critic, e, obs, act, taus))
    for name, param in critic.named_parameters():  # independent initialisation
        if name != "head_out.bias":  # zero-initialised
            assert not torch.equal(param[0], param[1]), name
    assert (out[0] - out[1]).abs().max() > 1e-4


# --- Fitting a known distribution -------------------------------------------------------------
# Targets: 0.9 N(1, 0.1^2) + 0.1 N(-10, 0.5^2) (std 0.1 and 0.5). With kappa = 1 the quantile
# Huber loss is minimised not at the true quantiles but at "Huber quantiles" (near the narrow
# main mode the loss is quadratic, i.e. expectile-like). We compute both numerically: the fit
# must match the Huber quantiles closely and the true quantiles within the Huber bias.
COMPONENTS = ((0.9, 1.0, 0.1), (0.1, -10.0, 0.5))  # (weight, mean, std)
LEVELS = (0.05, 0.5, 0.95)


def mixture_quantile(tau: float) -> float:
    def cdf(x: float) -> float:
        return sum(w * stats.norm.cdf(x, m, s) for w, m, s in COMPONENTS)

    return optimize.brentq(lambda x: cdf(x) - tau, -30.0, 30.0)


def huber_quantile(tau: float, kappa: float = 1.0) -> float:
    """Population minimiser of E[rho^kappa_tau(Y - theta)]: the root of its derivative.

    The expectation is a trapezoid rule on a fine grid per component (the integrand is
    continuous: the clipped residual is 0 where the weight jumps).
    """
    grids = [np.linspace(m - 12 * s, m + 12 * s, 20001) for _, m, s in COMPONENTS]
    dens = [w * stats.norm.pdf(y, m, s) for y, (w, m, s) in zip(grids, COMPONENTS, strict=True)]

    def slope(theta: float) -> float:
        total = 0.0
        for y, p in zip(grids, dens, strict=True):
            d = y - theta
            total += np.trapezoid(p * np.abs(tau - (d < 0)) * np.clip(d, -kappa, kappa), y)
        return total

    return optimize.brentq(slope, -30.0, 30.0)


def sample_mixture(n: int, gen: torch.Generator) -> torch.Tensor:
    (w_main, mu_main, sd_main), (_, mu_tail, sd_tail) = COMPONENTS
    main = torch.rand(n, generator=gen) < w_main
    a = mu_main + sd_main * torch.randn(n, generator=gen)
    b = mu_tail + sd_tail * torch.randn(n, generator=gen)
    return torch.where(main, a, b)


def test_quantile_fit_recovers_bimodal_quantiles() -> None:
    truth = [mixture_quantile(t) for t in LEVELS]  # about [-10.0, 0.986, 1.159]
    huber = [huber_quantile(t) for t in LEVELS]  # about [-9.53, 0.889, 1.085]

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    critic = IQNEnsemble(1, 1, n_critics=2, hidden=64, embed_dim=32, n_cos=32, head_hidden=64)
    steps, batch, n = 1500, 16, 32
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)
    obs, act = torch.zeros(batch, 1), torch.zeros(batch, 1)  # one dummy state-action pair
    for _ in range(steps):
        taus = torch.rand(batch, n, generator=gen)
        target = sample_mixture(batch * n, gen).view(batch, n)
        loss = quantile_huber_loss(critic(obs, act, taus), taus, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    with torch.no_grad():
        fitted = critic(obs[:1], act[:1], torch.tensor(LEVELS))[:, 0]  # [E, 3]
    for e in range(critic.n_critics):
        got = fitted[e].tolist()
        # Close to the loss's own optimum ...
        assert got[0] == pytest.approx(huber[0], abs=0.4), (got, huber)
        assert got[1:] == pytest.approx(huber[1:], abs=0.05), (got, huber)
        # ... and to the true quantiles within the kappa=1 Huber bias. Weighting by the
        # target's tau (the public RADAC code) gives about [0.89, 0.90, 0.92]: every level
        # at the median, off by ~11 at tau=0.05 and ~0.17 from the Huber optimum at 0.95.
        assert got[0] == pytest.approx(truth[0], abs=1.0), (got, truth)
        assert got[1:] == pytest.approx(truth[1:], abs=0.15), (got, truth)


# --- The public code's weighting pulls every quantile to the median ---------------------------
WIDE_SD = 3.0  # targets ~ N(0, 3^2): errors mostly beyond kappa = 1, so close to quantiles


def normal_huber_quantile(tau: float, sd: float, kappa: float = 1.0) -> float:
    """Population minimiser of the quantile Huber loss for N(0, sd^2) targets."""
    y = np.linspace(-12 * sd, 12 * sd, 40001)
    p = stats.norm.pdf(y, 0.0, sd)

    def slope(theta: float) -> float:
        d = y - theta
        return np.trapezoid(p * np.abs(tau - (d < 0)) * np.clip(d, -1.0, 1.0), y)

    return optimize.brentq(slope, -30.0, 30.0)


def fit_normal(tau_weighting: str, steps: int = 600) -> list[float]:
    """A one-critic IQN fitted to N(0, 3^2) targets with the given weighting; its 0.1, 0.5
    and 0.9 quantiles."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    critic = IQNEnsemble(1, 1, n_critics=1, hidden=32, embed_dim=16, n_cos=16, head_hidden=32)
    batch, n = 16, 16
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)
    zeros = torch.zeros(batch, 1)
    for _ in range(steps):
        taus = torch.rand(batch, n, generator=gen)
        target = WIDE_SD * torch.randn(batch, n, generator=gen)
        z = critic(zeros, zeros, taus)
        loss = quantile_huber_loss(z, taus, target, tau_weighting=tau_weighting)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return critic(zeros[:1], zeros[:1], torch.tensor([0.1, 0.5, 0.9]))[0, 0].tolist()


def test_target_weighting_collapses_the_fitted_tails_to_the_median() -> None:
    truth = stats.norm.ppf([0.1, 0.9], 0.0, WIDE_SD)  # -+3.84
    huber = [normal_huber_quantile(t, WIDE_SD) for t in (0.1, 0.9)]  # -+3.48 (kappa = 1)
    low, median, high = fit_normal("current")
    # The correct weighting: the tails where the loss puts them, near the true quantiles.
    assert [low, high] == pytest.approx(huber, abs=0.2)
    assert [low, high] == pytest.approx(truth, abs=0.6)
    assert median == pytest.approx(0.0, abs=0.2)
    # The public code's weighting: both tails within 0.5 of the median (0), 3.8 off.
    low, median, high = fit_normal("target")
    assert abs(low) < 0.5 and abs(high) < 0.5 and abs(median) < 0.5
    assert high - low < 0.15 * (truth[1] - truth[0])
