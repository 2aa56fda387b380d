"""Diffusion and flow-matching actors: schedule numbers, exact samplers, gradients, BC modes."""

import pytest
import torch
from torch import Tensor, nn

from ramac.nets.diffusion import DiffusionActor, vp_beta_schedule
from ramac.nets.flow import FlowActor

torch.set_num_threads(1)

ACTORS = [DiffusionActor, FlowActor]
OBS_DIM, ACT_DIM = 3, 2


def tiny(cls: type[nn.Module], **kwargs) -> nn.Module:
    return cls(OBS_DIM, ACT_DIM, hidden=16, n_layers=2, time_dim=8, **kwargs)


def test_vp_schedule_reference_numbers() -> None:
    # docs/reference-code.md, "RADAC", "Diffusion": T=5 -> beta ~ [0.196, 0.459, 0.636, 0.755,
    # 0.835], alpha_bar_T ~ 0.0064.
    betas = vp_beta_schedule(5)
    assert betas.tolist() == pytest.approx([0.196, 0.459, 0.636, 0.755, 0.835], abs=1e-3)
    assert torch.prod(1.0 - betas).item() == pytest.approx(0.0064, abs=1e-4)


@pytest.mark.parametrize("cls", ACTORS)
def test_interface_shapes_and_action_bounds(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    actor = tiny(cls, max_action=2.0)
    assert (actor.obs_dim, actor.act_dim, actor.max_action) == (OBS_DIM, ACT_DIM, 2.0)
    obs = torch.randn(7, OBS_DIM)
    actions = actor(obs)
    assert actions.shape == (7, ACT_DIM)
    assert actions.abs().max() <= 2.0
    loss = actor.loss(torch.rand(7, ACT_DIM), obs)
    assert loss.shape == () and torch.isfinite(loss)


class ChainByForward(nn.Module):
    """A stand-in network's ``along_chain``: its ``forward`` at time ``times[k]``."""

    def along_chain(self, times: Tensor, obs: Tensor):
        return lambda x, k: self(x, times[k].expand(x.shape[0]), obs)


class PointMassDenoiser(ChainByForward):
    """The exact epsilon predictor when every action equals ``target``."""

    def __init__(self, actor: DiffusionActor, target: Tensor) -> None:
        super().__init__()
        self.actor, self.target = actor, target

    def forward(self, x: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        a, t = self.actor, t.long()
        return (x - a.sqrt_abar[t, None] * self.target) / a.sqrt_one_minus_abar[t, None]


class PointMassVelocity(ChainByForward):
    """The exact flow-matching velocity when every action equals ``target``."""

    def __init__(self, target: Tensor) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        return (self.target - x) / (1.0 - t[:, None])


def test_samplers_are_exact_for_exact_models() -> None:
    # With the Bayes-optimal network for a point mass, DDPM posterior sampling and Euler
    # integration of the straight-path velocity both land exactly on the point, whatever the
    # starting noise. This pins the schedule algebra of both samplers.
    target = torch.tensor([0.3, -0.7])
    obs = torch.zeros(50, OBS_DIM)
    diffusion = DiffusionActor(OBS_DIM, ACT_DIM, n_steps=5)
    diffusion.denoiser = PointMassDenoiser(diffusion, target)
    flow = FlowActor(OBS_DIM, ACT_DIM, n_steps=10)
    flow.velocity = PointMassVelocity(target)
    for actor in (diffusion, flow):
        out = actor.sample(obs, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, target.expand(50, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", ACTORS)
def test_chain_shortcut_is_the_network_itself(cls: type[nn.Module]) -> None:
    # The samplers call ``along_chain`` (first layer split by input block, time and state
    # shares computed once); it must be forward(x, t, obs) at every step, gradients too.
    torch.manual_seed(0)
    net = tiny(cls, action_gain=3.0)
    net = net.denoiser if cls is DiffusionActor else net.velocity
    obs, x = torch.randn(6, OBS_DIM), torch.randn(6, ACT_DIM, requires_grad=True)
    times = torch.tensor([0.0, 0.25, 3.0])
    for k in range(len(times)):
        step = net.along_chain(times, obs)  # a fresh graph for each gradient
        full = net(x, times[k].expand(6), obs)
        torch.testing.assert_close(step(x, k), full, atol=1e-6, rtol=1e-5)
        grads = torch.autograd.grad(step(x, k).square().sum(), [x, *net.parameters()])
        fulls = torch.autograd.grad(full.square().sum(), [x, *net.parameters()])
        for ours, theirs in zip(grads, fulls, strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls", ACTORS)
def test_sample_gradient_reaches_every_parameter(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    actor = tiny(cls)
    actor.sample(torch.randn(64, OBS_DIM)).sum().backward()
    for name, param in actor.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", ACTORS)
def test_seeded_sampling_is_reproducible(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    actor = tiny(cls)
    obs = torch.randn(10, OBS_DIM)
    first = actor.sample(obs, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # global state must not matter
    again = actor.sample(obs, generator=torch.Generator().manual_seed(3))
    other = actor.sample(obs, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not torch.equal(first, other)
    # Passing the initial noise explicitly fixes x_T (diffusion) or x_0 (flow).
    noise = torch.randn(10, ACT_DIM)
    gen = torch.Generator
    a = actor.sample(obs, generator=gen().manual_seed(5), noise=noise)
    b = actor.sample(obs, generator=gen().manual_seed(5), noise=noise)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    if cls is FlowActor:  # deterministic given the noise
        torch.testing.assert_close(actor.sample(obs, noise=noise), a, atol=0, rtol=0)


# --- Behaviour cloning of a bimodal action distribution ------------------------------------
MODES = torch.tensor([[0.6, 0.6], [-0.6, -0.6]])
MODE_WEIGHTS = (0.7, 0.3)  # with std 0.05, essentially all mass lies within 0.2 of its mode


def bimodal_actions(n: int, gen: torch.Generator) -> Tensor:
    second = torch.rand(n, generator=gen) >= MODE_WEIGHTS[0]
    return MODES[second.long()] + 0.05 * torch.randn(n, 2, generator=gen)


def mode_fractions(actor: nn.Module, steps: int, lr: float) -> list[float]:
    """Train BC on the bimodal data (one dummy state), return the sample mass near each mode."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    data = bimodal_actions(2000, gen)
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)
    batch = 256
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        loss = actor.loss(data[idx], torch.zeros(batch, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        samples = actor.sample(torch.zeros(1000, 1), generator=torch.Generator().manual_seed(2))
    return (torch.cdist(samples, MODES) < 0.2).float().mean(0).tolist()


def test_diffusion_bc_reproduces_both_modes() -> None:
    # n_steps=20 rather than RADAC's 5: with T=5 even the exact (Bayes-optimal) denoiser of
    # this mixture yields about 61% / 15% of samples within 0.2 of the modes, because the
    # last reverse step outputs a posterior mean that blends well-separated modes.
    actor = DiffusionActor(1, 2, n_steps=20, hidden=64, n_layers=3)
    fractions = mode_fractions(actor, steps=1500, lr=1e-2)
    assert fractions == pytest.approx(list(MODE_WEIGHTS), abs=0.1)


def test_flow_bc_reproduces_both_modes() -> None:
    actor = FlowActor(1, 2, n_steps=10, hidden=64, n_layers=3)
    fractions = mode_fractions(actor, steps=1500, lr=1e-2)
    assert fractions == pytest.approx(list(MODE_WEIGHTS), abs=0.1)
