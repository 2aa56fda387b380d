"""Networks: IQN and CODAC quantile critic ensembles, diffusion / flow-matching / VAE actors,
shared blocks."""

from ramac.nets.common import EMA, SinusoidalTimeEmbedding, TimeConditionedMLP, polyak_update
from ramac.nets.diffusion import DiffusionActor, vp_beta_schedule
from ramac.nets.flow import FlowActor
from ramac.nets.iqn import EnsembleLinear, IQNEnsemble, cosine_embedding, quantile_huber_loss
from ramac.nets.mlp import mlp
from ramac.nets.quantile_mlp import EnsembleLayerNorm, QuantileMlpEnsemble
from ramac.nets.vae import VAE

__all__ = [
    "EMA",
    "VAE",
    "DiffusionActor",
    "EnsembleLayerNorm",
    "EnsembleLinear",
    "FlowActor",
    "IQNEnsemble",
    "QuantileMlpEnsemble",
    "SinusoidalTimeEmbedding",
    "TimeConditionedMLP",
    "cosine_embedding",
    "mlp",
    "polyak_update",
    "quantile_huber_loss",
    "vp_beta_schedule",
]
