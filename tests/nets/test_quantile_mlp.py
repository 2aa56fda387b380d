"""CODAC's QuantileMlp critic (ramac.nets.quantile_mlp) against the facts of its source
(distributional/networks.py and distributional/codac.py of JasonMa2016/CODAC @ 991866b):
the layers, their sizes, LayerNorm after every hidden layer, the sigmoid level embedding
with cosines from i = 1, and a forward pass computed by hand."""

import math

import torch

from ramac.agents import make_agent
from ramac.nets.quantile_mlp import QuantileMlpEnsemble

EPS = 1e-5  # nn.LayerNorm's default, as the authors'


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_codac_uses_the_authors_layers_in_the_authors_order():
    """HalfCheetah sizes (17 + 6 inputs): [s, a] -> 256 -> LN -> ReLU; 64 cosines -> 256 -> LN
    -> sigmoid; product -> 256 -> LN -> ReLU -> 1; two critics; each call runs in that order."""
    critic = make_agent("codac", 17, 6, 1.0).critic
    assert isinstance(critic, QuantileMlpEnsemble)
    sizes = {
        name: tuple(p.shape for p in child.parameters()) for name, child in critic.named_children()
    }
    assert sizes == {
        "base_layer": ((2, 23, 256), (2, 1, 256)),
        "base_norm": ((2, 1, 256), (2, 1, 256)),
        "tau_layer": ((2, 64, 256), (2, 1, 256)),
        "tau_norm": ((2, 1, 256), (2, 1, 256)),
        "merge_layer": ((2, 256, 256), (2, 1, 256)),
        "merge_norm": ((2, 1, 256), (2, 1, 256)),
        "head_out": ((2, 256, 1), (2, 1, 1)),
    }
    order = []
    for name, child in critic.named_children():
        child.register_forward_hook(lambda *_, name=name: order.append(name))
    z = critic(torch.randn(5, 17), torch.rand(5, 6), torch.rand(5, 32))
    assert z.shape == (2, 5, 32)
    assert order == [
        "base_layer",
        "base_norm",
        "tau_layer",
        "tau_norm",
        "merge_layer",
        "merge_norm",
        "head_out",
    ]


def hand_set_critic(n_critics: int = 1) -> QuantileMlpEnsemble:
    """1-d state and action, width 2, 2 cosines, merge 2; identity layers, set affines."""
    net = QuantileMlpEnsemble(1, 1, n_critics, hidden=2, n_cos=2, head_hidden=2)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        eye = torch.eye(2)
        for layer in (net.base_layer, net.tau_layer, net.merge_layer):
            layer.weight.copy_(eye)
        for norm in (net.base_norm, net.tau_norm):
            norm.weight.fill_(1.0)
        net.base_norm.bias.copy_(torch.tensor([0.0, 2.0]))
        net.merge_norm.weight.copy_(torch.tensor([2.0, 1.0]))
        net.merge_norm.bias.copy_(torch.tensor([0.0, 0.5]))
        net.head_out.weight.copy_(torch.tensor([[3.0], [7.0]]))
        net.head_out.bias.fill_(0.25)
    return net


def expected_by_hand() -> float:
    """Z(s = 0.5, a = -0.5; tau = 0.75) of ``hand_set_critic``, step by step."""

    def norm2(x: float, y: float) -> tuple[float, float]:  # LayerNorm of 2 features
        half = (y - x) / 2
        k = half / math.sqrt(half * half + EPS)
        return -k, k

    b1, b2 = norm2(0.5, -0.5)  # base [s, a] -> LN
    base = (max(0.0, b1), max(0.0, b2 + 2.0))  # LN bias [0, 2], ReLU
    t1, t2 = norm2(math.cos(math.pi * 0.75), math.cos(2 * math.pi * 0.75))  # i = 1, 2
    psi = (sigmoid(t1), sigmoid(t2))
    m1, m2 = norm2(base[0] * psi[0], base[1] * psi[1])
    h = (max(0.0, 2.0 * m1), max(0.0, m2 + 0.5))  # LN affine [2, 1], [0, 0.5]; ReLU
    return 3.0 * h[0] + 7.0 * h[1] + 0.25


def test_a_forward_pass_computed_by_hand():
    """The value pins LayerNorm's placement (without it the values scale with the inputs),
    the cosines from i = 1 (from i = 0 the embedding's order flips: 6.25, not 10.75) and
    the sigmoid gate."""
    net = hand_set_critic()
    z = net(torch.tensor([[0.5]]), torch.tensor([[-0.5]]), torch.tensor([[0.75]]))
    assert z.shape == (1, 1, 1)
    assert abs(expected_by_hand() - 10.75) < 1e-3  # the arithmetic above, rounded
    torch.testing.assert_close(z.item(), expected_by_hand(), rtol=1e-6, atol=1e-6)


def test_members_are_independent_and_shared_levels_broadcast():
    net = hand_set_critic(n_critics=2)
    with torch.no_grad():
        net.head_out.bias[1].fill_(1.25)  # the second critic: one more
    obs, act = torch.tensor([[0.5], [0.5]]), torch.tensor([[-0.5], [-0.5]])
    shared = net(obs, act, torch.tensor([0.75, 0.75, 0.75]))
    per_row = net(obs, act, torch.full((2, 3), 0.75))
    torch.testing.assert_close(shared, per_row)
    torch.testing.assert_close(shared[0], torch.full((2, 3), expected_by_hand()))
    torch.testing.assert_close(shared[1], torch.full((2, 3), expected_by_hand() + 1.0))


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(0)
    net = QuantileMlpEnsemble(3, 2, n_critics=2, hidden=8, n_cos=4, head_hidden=8)
    z = net(torch.randn(16, 3), torch.rand(16, 2) * 2 - 1, torch.rand(16, 5))
    z.pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        for member in range(2):  # each critic's slice, not just the tensor
            assert p.grad[member].abs().sum() > 0, (name, member)
