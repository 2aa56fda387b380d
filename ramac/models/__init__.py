"""Learned models of the environment, trained on the offline data (model-based agents).

``dynamics``: the probabilistic dynamics ensemble of MBPO / MOPO / RAVL and its on-disk cache.
"""

from ramac.models.dynamics import DynamicsConfig, DynamicsEnsemble, ensure_dynamics

__all__ = ["DynamicsConfig", "DynamicsEnsemble", "ensure_dynamics"]
