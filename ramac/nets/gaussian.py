"""The tanh-squashed Gaussian policy of SAC and its offline descendants (CQL, CODAC).

a = max_action * tanh(x), x ~ N(mu(s), sigma(s)^2) per action dimension, with the exact
log-density of a (the Gaussian's, minus the log-Jacobian of the squashing and scaling), as
SAC defines it (Haarnoja et al. 2018, arXiv 1801.01290, appendix C). Samples are
reparameterised, so the actor's loss differentiates through them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ramac.nets.mlp import mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the clamp of SAC's reference code and of CORL's CQL


class TanhGaussianActor(nn.Module):
    """pi(a | s) = max_action * tanh(N(mu(s), sigma(s)^2)), an MLP giving [mu, log sigma].

    n_layers x (Linear hidden + ReLU) -> Linear 2 * act_dim. The last layer starts small
    (Xavier-uniform with gain 1e-2, zero bias: CORL's CQL policy, ``init_module_weights``),
    so the initial policy is close to N(0, exp(log_std_offset)^2) squashed in every state.
    ``log_std_offset`` is added to the network's log sigma before the clamp to
    [LOG_STD_MIN, LOG_STD_MAX] (CORL's CQL: -1, learned there, a constant here).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        max_action: float,
        hidden: int = 256,
        n_layers: int = 3,
        log_std_offset: float = 0.0,
    ) -> None:
        super().__init__()
        self.act_dim, self.max_action = act_dim, float(max_action)
        self.log_std_offset = float(log_std_offset)
        self.net = mlp(obs_dim, [hidden] * n_layers, 2 * act_dim)
        last = self.net[-1]
        nn.init.xavier_uniform_(last.weight, gain=1e-2)
        nn.init.zeros_(last.bias)

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, log sigma) of the pre-squash Gaussian: obs [..., ds] -> two [..., da]."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, (log_std + self.log_std_offset).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """A reparameterised action [..., da] and its log-density [...] under pi(. | s).

        log pi(a) = sum_i [log N(x_i; mu_i, sigma_i) - log(1 - tanh(x_i)^2)] - da log max_action,
        with log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)) (stable for large |x|).
        """
        mean, log_std = self.distribution(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        x = mean + log_std.exp() * noise
        gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        log_jacobian = 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))
        log_prob = (gaussian - log_jacobian).sum(dim=-1) - self.act_dim * math.log(self.max_action)
        return self.max_action * torch.tanh(x), log_prob

    def deterministic(self, obs: Tensor) -> Tensor:
        """The squashed mean max_action * tanh(mu(s)): the usual evaluation action of SAC,
        CQL (CORL's ``act`` in eval mode) and CODAC (``select_action(eval=True)``)."""
        return self.max_action * torch.tanh(self.distribution(obs)[0])
