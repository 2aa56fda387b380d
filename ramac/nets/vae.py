"""BCQ-style conditional VAE of the behaviour policy (O-RAAC's generative model).

As O-RAAC's (oraaclib/util/neural_networks/neural_networks.py of nuria95/O-RAAC @ 57347bc;
docs/reference-code.md, "O-RAAC", "VAE").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_STD_MIN, LOG_STD_MAX = -4.0, 15.0  # O-RAAC's clamp (docs/reference-code.md, "O-RAAC")
LATENT_CLIP = 0.5  # decoding draws z ~ N(0, I) clipped to [-0.5, 0.5] (the same section)


class VAE(nn.Module):
    """Conditional VAE p(a | s): encoder q(z | s, a), decoder a = max_action tanh(f(s, z)).

    Encoder Linear(s+a, hidden) ReLU, Linear(hidden, hidden) ReLU -> mean, log_std;
    decoder Linear(s+z, hidden) ReLU, Linear(hidden, hidden) ReLU, Linear(a) -> tanh.

    Two settings carry assumptions about the data's scale and shape (both BCQ / O-RAAC's by
    default):

    - ``kl_weight``: the loss (mean squared error over the d action dims + kl_weight x the
      mean KL over the L latent dims) is, up to a factor, the negative ELBO of a Gaussian
      decoder with std sqrt(kl_weight * d / (2 L)) per action dimension: 0.35 for 0.5 and
      L = 2d, whatever d is. Structure narrower than that is modelled as decoder noise, not
      encoded: on the 2-D bandit (modes 0.05-0.1 wide) the VAE then uses 2 of its 4 latent
      dims for 0.26 nats in all and decodes a blur even from the full prior.
    - ``latent_clip``: decoding draws z ~ N(0, I) clipped to +-latent_clip (None: not
      clipped), the central box of the prior (2.3% of its mass for 0.5 and L = 4), so only
      the "most typical" actions are decoded. That selects the inner mode when one mode
      encloses another (the bandit's centre inside its ring): every clipped decode lands in
      the centre, even from a VAE whose unclipped samples hold both modes.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        max_action: float = 1.0,
        hidden: int = 750,
        latent_dim: int | None = None,
        kl_weight: float = 0.5,
        latent_clip: float | None = LATENT_CLIP,
    ) -> None:
        super().__init__()
        if latent_clip is not None and latent_clip <= 0:
            raise ValueError(f"latent_clip must be positive or None, got {latent_clip}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.max_action, self.kl_weight = float(max_action), kl_weight
        self.latent_clip = latent_clip
        self.latent_dim = latent_dim if latent_dim is not None else 2 * act_dim
        self.encoder = nn.Sequential(
            nn.Linear(obs_dim + act_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.mean_head = nn.Linear(hidden, self.latent_dim)
        self.log_std_head = nn.Linear(hidden, self.latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(obs_dim + self.latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, act_dim),
        )

    def encode(self, actions: Tensor, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior q(z | s, a): returns (mean, std), each [B, latent_dim]."""
        h = self.encoder(torch.cat([obs, actions], dim=-1))
        log_std = self.log_std_head(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mean_head(h), log_std.exp()

    def decode(
        self,
        obs: Tensor,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Decode latents into actions; z defaults to N(0, I) clipped to +-``latent_clip``."""
        if z is None:
            shape = (obs.shape[0], self.latent_dim)
            z = torch.randn(shape, generator=generator, device=obs.device, dtype=obs.dtype)
            if self.latent_clip is not None:
                z = z.clamp(-self.latent_clip, self.latent_clip)
        return self.max_action * torch.tanh(self.decoder(torch.cat([obs, z], dim=-1)))

    def loss(self, actions: Tensor, obs: Tensor) -> Tensor:
        """ELBO surrogate: MSE(recon, a) + kl_weight KL(N(mu, sigma) || N(0, I)).

        Both terms are means over batch (and latent / action dims), as in BCQ and O-RAAC
        (docs/reference-code.md, "O-RAAC", "VAE").
        """
        mean, std = self.encode(actions, obs)
        z = mean + std * torch.randn_like(std)
        recon = self.decode(obs, z)
        kl = -0.5 * (1.0 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
        return F.mse_loss(recon, actions) + self.kl_weight * kl

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A behaviour-like action per state, from a (clipped) prior latent."""
        return self.decode(obs, generator=generator)

    def forward(self, obs: Tensor) -> Tensor:
        """The same as :meth:`sample`."""
        return self.sample(obs)
