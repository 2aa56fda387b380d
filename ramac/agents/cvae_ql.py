"""CVAE-QL: Diffusion-QL's recipe with a BCQ-style conditional VAE as the policy.

The VAE policy's decoder output, a = decode(s, z) with z ~ N(0, I) clipped to +-0.5, is
trained to maximise Q: loss = VAE loss - eta * Q(s, decode(s)) / mean|Q| (detached), twin Q
critics with targets, an EMA of the VAE for target actions; act() decodes a clipped
random latent. The paper's bandit figure names this baseline but gives no details
(docs/reference-code.md, "The paper"); the Q term and critics follow Diffusion-QL
(docs/reference-code.md, "Diffusion-QL") and the VAE follows O-RAAC/BCQ
(docs/reference-code.md, "O-RAAC").
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ramac.agents.base import register
from ramac.agents.diffusion_ql import GenerativeQL, GenerativeQLConfig
from ramac.nets.vae import VAE


@dataclass
class CVAEQLConfig(GenerativeQLConfig):
    """CVAE-QL hyperparameters: Diffusion-QL's, plus the VAE's (O-RAAC's, docs/reference-code.md
    "O-RAAC", quoted below as "O-RAAC")."""

    actor_hidden: int = 750  # VAE encoder / decoder width (BCQ / O-RAAC; "O-RAAC", "VAE")
    latent_dim: int | None = None  # None = 2 * act_dim ("O-RAAC", "VAE")
    kl_weight: float = 0.5  # loss MSE + 0.5 KL ("O-RAAC", "VAE")
    # decode z ~ N(0, I) clipped to +-this ("O-RAAC", "VAE"); None: not clipped
    latent_clip: float | None = 0.5


class CVAEQL(GenerativeQL):
    """Generative Q-learning with a conditional-VAE policy."""

    def _make_actor(self) -> nn.Module:
        c = self.config
        return VAE(
            self.obs_dim,
            self.act_dim,
            self.max_action,
            c.actor_hidden,
            c.latent_dim,
            c.kl_weight,
            c.latent_clip,
        )


register("cvae_ql", CVAEQLConfig, CVAEQL, "CVAE-QL")
