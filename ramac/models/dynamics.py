"""A probabilistic dynamics ensemble (MBPO / MOPO / RAVL) trained on an offline dataset.

E members, each a Gaussian over [s' - s, r] given (s, a), held in ensemble-batched layers
(:class:`~ramac.nets.iqn.EnsembleLinear`). What it does and why, with its source:

- Each member is an MLP of 4 x 200 SiLU layers with a mean and a log-variance head
  (``dynamics_training/net.py`` of anyasims/edge-of-reach @ 18b5085, "the reference" below;
  full hash 18b50853219676d120c6238f399664500eaa1f0c), weights drawn from a truncated normal
  with std 1 / (2 sqrt(fan-in)), zero biases (the reference's ``reinitialize_fc_layer_``).
- The log-variance is bounded softly between a learned maximum and minimum (PETS' trick,
  as the reference's ``BayesianNeuralNetwork.forward``): lv <- max - softplus(max - lv),
  then lv <- min + softplus(lv - min); the bounds start at 0.5 and -10 and are pushed
  together by 0.01 (sum max - sum min) in the loss (reference ``Ensemble.__init__`` and
  ``train_dynamics_model.py``), so the model cannot claim certainty it never earned.
- The loss is sum over members of mean[(y - mu)^2 exp(-lv) + lv] (the reference's
  ``GaussianMSELoss``: twice the Gaussian NLL less its constant log 2 pi), plus an L2
  penalty of decay_l / 2 ||W_l||^2 per layer (the reference's per-layer Adam weight decays,
  whose gradient this is), plus the bounds' regulariser.
- Each member trains on its own bootstrap resample of the training split (reference
  ``EnsembleTransitionDataset``), 20% of the data is held out (``train_val_ratio``), and
  training stops when no member's held-out MSE improved by 1% for ``patience`` epochs
  (the reference's ``check_validation_losses`` and its 6-long window), after at least
  ``min_epochs`` (lowering the lr x0.3 once if it would stop earlier), within ``max_epochs``.
  Each member keeps its best held-out weights; the ``n_elites`` members with the lowest
  held-out MSE are the elites (reference ``select_elites``).
- A step picks a random elite per row and samples s' and r from its Gaussian (reference
  ``DynamicsModel.transition_function_torch``).

Differences, each deliberate: inputs AND targets are standardised with the training
split's statistics (the reference standardises inputs only, clipped to +-10 as here), so
every output dimension counts alike in the loss and in the held-out MSE, which is measured
in standardised units; predicted next states are clipped to the data's observation bounds
(the reference does not clip), after the termination rule has seen the unclipped state, so
clipping never hides a fall; and a hand-written termination rule per task: Gymnasium's
healthy conditions (hopper, walker2d; halfcheetah never ends).

``ensure_dynamics`` trains once per (data, seed, config) and caches the result under
``data/models/`` (``$RAMAC_DATA_DIR/models/``) with a record beside it: provenance, held-out
errors, and what the model sees of the data's hazard (:mod:`ramac.models.hazard_view`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ramac import progress
from ramac.data.dataset import OfflineDataset
from ramac.data.generate import claim_data_folder, default_data_dir
from ramac.errors import UserError
from ramac.folders import check_inside
from ramac.io import (
    atomic_write_bytes,
    atomic_write_text,
    load_torch_file,
    move_aside,
    problem_of,
)
from ramac.models.hazard_view import penalty_fidelity
from ramac.nets.iqn import EnsembleLinear

REF = "anyasims/edge-of-reach @ 18b5085"  # the reference code every default below cites
INPUT_CLIP = 10.0  # standardised inputs clipped to +-10 (reference MeanStdevFilter clip)


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """How the ensemble is built and trained; each default's source is the reference code
    (anyasims/edge-of-reach @ 18b5085, files named per line)."""

    n_members: int = 7  # train_dynamics_model.py num_models
    n_elites: int = 5  # train_dynamics_model.py num_elites
    hidden: int = 200  # train_dynamics_model.py hidden_dim
    n_layers: int = 4  # dynamics_training/net.py: fc1..fc4, SiLU
    lr: float = 1e-3  # train_dynamics_model.py model_lr (Adam)
    batch_size: int = 256  # train_dynamics_model.py batch_size
    holdout_ratio: float = 0.2  # train_dynamics_model.py train_val_ratio
    max_epochs: int = 2000  # train_dynamics_model.py epochs
    min_epochs: int = 350  # train_dynamics_model.py min_epochs ("some models terminate early")
    patience: int = 5  # epochs without a 1% gain before stopping (its deque(maxlen=6))
    improvement: float = 0.01  # relative held-out gain that counts (check_validation_losses)
    lr_drop: float = 0.3  # lr factor, once, when it would stop before min_epochs (StepLR 0.3)
    # dynamics_training/net.py decays of fc1..fc4 and of the output heads (x l2_reg 1.0)
    weight_decays: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    logvar_reg: float = 0.01  # weight of sum(max lv) - sum(min lv) (train_dynamics_model.py)
    max_logvar_init: float = 0.5  # dynamics_training/ensemble.py Ensemble.__init__
    min_logvar_init: float = -10.0  # dynamics_training/ensemble.py Ensemble.__init__

    def validated(self) -> DynamicsConfig:
        """The config when its values can train an ensemble, else a one-line UserError."""
        if not 1 <= self.n_elites <= self.n_members:
            raise UserError(f"dynamics: n_elites must lie in [1, n_members], got {self.n_elites}")
        if not 0.0 < self.holdout_ratio < 1.0:
            raise UserError(f"dynamics: holdout_ratio must lie in (0, 1), got {self.holdout_ratio}")
        if len(self.weight_decays) != self.n_layers + 1:
            raise UserError(
                f"dynamics: weight_decays needs n_layers + 1 = {self.n_layers + 1} values, "
                f"got {len(self.weight_decays)}"
            )
        return self

    def digest(self) -> str:
        """A short hash of every field (names the cache file)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


# ----------------------------------------------------------------------------- termination


def _hopper_done(next_obs: Tensor) -> Tensor:
    """Gymnasium Hopper-v4/v5 ``is_healthy`` negated, on the observation: z = obs[0] > 0.7,
    |angle = obs[1]| < 0.2, |state[2:] = obs[1:]| < 100 (healthy_state_range), all finite."""
    z, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (
        torch.isfinite(next_obs).all(dim=-1)
        & (next_obs[:, 1:].abs() < 100.0).all(dim=-1)
        & (z > 0.7)
        & (angle.abs() < 0.2)
    )
    return ~healthy


def _walker2d_done(next_obs: Tensor) -> Tensor:
    """Gymnasium Walker2d-v4/v5 ``is_healthy`` negated: 0.8 < z < 2.0 and -1 < angle < 1."""
    z, angle = next_obs[:, 0], next_obs[:, 1]
    return ~((z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0))


def _never_done(next_obs: Tensor) -> Tensor:
    """HalfCheetah never terminates."""
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


TERMINATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "halfcheetah": _never_done,
    "hopper": _hopper_done,
    "walker2d": _walker2d_done,
}


def task_of_dataset(dataset: OfflineDataset) -> str:
    """The task whose termination rule the model uses, from the dataset's id or env id."""
    for name in (dataset.provenance.id, dataset.provenance.env_id):
        task = (name or "").split("-")[0].split("_")[0].lower()
        if task in TERMINATIONS:
            return task
    raise UserError(
        f"dataset {dataset.provenance.id}: a dynamics model needs the task's termination rule; "
        f"known tasks: {', '.join(sorted(TERMINATIONS))}"
    )


# ----------------------------------------------------------------------------- the pieces


def soft_bound(logvar: Tensor, max_logvar: Tensor, min_logvar: Tensor) -> Tensor:
    """lv bounded softly into (min, max), differentiably in all three (PETS; the reference's
    ``BayesianNeuralNetwork.forward``): max - softplus(max - lv), then min + softplus(. - min)."""
    logvar = max_logvar - F.softplus(max_logvar - logvar)
    return min_logvar + F.softplus(logvar - min_logvar)


def gaussian_nll(mean: Tensor, logvar: Tensor, target: Tensor) -> Tensor:
    """Each member's mean over rows and dims of (y - mu)^2 exp(-lv) + lv: [E].

    Twice the Gaussian negative log-likelihood less log 2 pi (the reference's
    ``GaussianMSELoss``); mean, logvar, target [E, B, d].
    """
    return ((target - mean).pow(2) * torch.exp(-logvar) + logvar).mean(dim=(-2, -1))


def select_elites(errors: Tensor, n_elites: int) -> Tensor:
    """Indices of the ``n_elites`` members with the lowest held-out error, best first."""
    return torch.argsort(errors)[:n_elites]


def _trunc_normal_init(layer: EnsembleLinear) -> None:
    """The reference's init: weights ~ truncated N(0, std), std = 1 / (2 sqrt(fan-in)),
    cut at +-2 std; zero biases (``reinitialize_fc_layer_``)."""
    std = 1.0 / (2.0 * math.sqrt(layer.in_features))
    with torch.no_grad():
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        layer.bias.zero_()


class DynamicsEnsemble(nn.Module):
    """E Gaussian members over y = [s' - s, r] given standardised (s, a), and their use.

    Buffers hold everything a loaded model needs besides its weights: input and target
    statistics, the observation bounds, the elites; ``task`` picks the termination rule.
    """

    def __init__(self, obs_dim: int, act_dim: int, task: str, config: DynamicsConfig) -> None:
        super().__init__()
        if task not in TERMINATIONS:
            raise UserError(f"dynamics: unknown task '{task}' (known: {sorted(TERMINATIONS)})")
        c = config.validated()
        self.obs_dim, self.act_dim, self.task, self.config = obs_dim, act_dim, task, c
        in_dim, out_dim = obs_dim + act_dim, obs_dim + 1
        widths = [in_dim] + [c.hidden] * c.n_layers
        self.hidden = nn.ModuleList(
            EnsembleLinear(c.n_members, a, b) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.head = EnsembleLinear(c.n_members, c.hidden, 2 * out_dim)  # [mean, log-variance]
        for layer in [*self.hidden, self.head]:
            _trunc_normal_init(layer)
        self.max_logvar = nn.Parameter(torch.full((out_dim,), c.max_logvar_init))
        self.min_logvar = nn.Parameter(torch.full((out_dim,), c.min_logvar_init))
        for name, size in (("in", in_dim), ("out", out_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(size))
            self.register_buffer(f"{name}_std", torch.ones(size))
        self.register_buffer("obs_low", torch.full((obs_dim,), -math.inf))
        self.register_buffer("obs_high", torch.full((obs_dim,), math.inf))
        self.register_buffer("elites", torch.arange(c.n_elites))
        self.record: dict[str, Any] = {}  # provenance and held-out figures (ensure_dynamics)

    @property
    def n_members(self) -> int:
        return self.config.n_members

    # -- statistics ------------------------------------------------------------------------
    def fit_statistics(self, inputs: Tensor, targets: Tensor, observations: Tensor) -> None:
        """Standardisation from the training split; observation bounds from all states."""
        with torch.no_grad():
            for name, data in (("in", inputs), ("out", targets)):
                std = data.std(dim=0, unbiased=False)
                getattr(self, f"{name}_mean").copy_(data.mean(dim=0))
                getattr(self, f"{name}_std").copy_(
                    torch.where(std > 1e-6, std, torch.ones_like(std))
                )
            self.obs_low.copy_(observations.min(dim=0).values)
            self.obs_high.copy_(observations.max(dim=0).values)

    def normalise_inputs(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Standardised (s, a) clipped to +-10: [..., ds + da]."""
        x = (torch.cat([obs, actions], dim=-1) - self.in_mean) / self.in_std
        return x.clamp(-INPUT_CLIP, INPUT_CLIP)

    def normalise_targets(self, targets: Tensor) -> Tensor:
        return (targets - self.out_mean) / self.out_std

    # -- the network -------------------------------------------------------------------------
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Standardised inputs [E, B, in] (one slice per member) -> standardised mean and
        bounded log-variance of y, each [E, B, ds + 1]."""
        h = x
        for layer in self.hidden:
            h = F.silu(layer(h))
        mean, logvar = self.head(h).chunk(2, dim=-1)
        return mean, soft_bound(logvar, self.max_logvar, self.min_logvar)

    def predict(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Every member's Gaussian over y in data units: mean and std, each [E, B, ds + 1]."""
        x = self.normalise_inputs(obs, actions).expand(self.n_members, -1, -1)
        mean, logvar = self(x)
        return mean * self.out_std + self.out_mean, torch.exp(0.5 * logvar) * self.out_std

    def loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Training loss on standardised x [E, B, in], y [E, B, out], and each member's NLL."""
        mean, logvar = self(x)
        nll = gaussian_nll(mean, logvar, y)
        bounds = self.config.logvar_reg * (self.max_logvar.sum() - self.min_logvar.sum())
        return nll.sum() + bounds + self.weight_decay(), nll.detach()

    def weight_decay(self) -> Tensor:
        """sum_l decay_l / 2 ||W_l||^2 (weights only, as the reference's Adam param groups)."""
        layers = [*self.hidden, self.head]
        return sum(
            d / 2.0 * layer.weight.pow(2).sum()
            for d, layer in zip(self.config.weight_decays, layers, strict=True)
        )

    @torch.no_grad()
    def heldout_mse(self, x: Tensor, y: Tensor, chunk: int = 8192) -> Tensor:
        """Each member's MSE of its mean on standardised held-out x [n, in], y [n, out]: [E]."""
        total = torch.zeros(self.n_members, device=x.device)
        for start in range(0, len(x), chunk):
            xs, ys = x[start : start + chunk], y[start : start + chunk]
            mean, _ = self(xs.expand(self.n_members, -1, -1))
            total += (mean - ys).pow(2).mean(dim=-1).sum(dim=-1)
        return total / len(x)

    # -- use -----------------------------------------------------------------------------------
    def terminal(self, next_obs: Tensor) -> Tensor:
        """The task's termination rule on predicted next states [B, ds]: [B] bool."""
        return TERMINATIONS[self.task](next_obs)

    @torch.no_grad()
    def step(
        self,
        obs: Tensor,
        actions: Tensor,
        generator: torch.Generator | None = None,
        sample_reward: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One model step from obs [B, ds], actions [B, da]: (next_obs [B, ds], reward [B],
        terminal [B] bool).

        A random elite per row; s' and r sampled from its Gaussian (r its mean when
        ``sample_reward`` is False). The termination rule sees the sampled state before it
        is clipped to the data's observation bounds, so clipping never hides a fall.
        """
        mean, std = self.predict(obs, actions)
        rows = torch.arange(obs.shape[0], device=obs.device)
        pick = torch.randint(
            len(self.elites), (obs.shape[0],), generator=generator, device=obs.device
        )
        member = self.elites[pick]
        mean, std = mean[member, rows], std[member, rows]
        noise = torch.randn(mean.shape, generator=generator, device=obs.device)
        sample = mean + std * noise
        next_obs = obs + sample[:, :-1]
        reward = sample[:, -1] if sample_reward else mean[:, -1]
        terminal = self.terminal(next_obs)
        return torch.maximum(torch.minimum(next_obs, self.obs_high), self.obs_low), reward, terminal


# ----------------------------------------------------------------------------- training


def _arrays(dataset: OfflineDataset, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(obs, actions) inputs, [s' - s, r] targets, and every known state (for the bounds)."""

    def t(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)

    obs, next_obs = t(dataset.observations), t(dataset.next_observations)
    inputs = torch.cat([obs, t(dataset.actions)], dim=-1)
    targets = torch.cat([next_obs - obs, t(dataset.rewards).reshape(-1, 1)], dim=-1)
    states = [obs, next_obs]
    if dataset.end_observations is not None and len(dataset.end_observations):
        ends = t(dataset.end_observations)
        states.append(ends[torch.isfinite(ends).all(dim=-1)])
    return inputs, targets, torch.cat(states)


class _BestWeights:
    """Each member's weights at its lowest held-out MSE so far (the reference keeps a copy
    per member and restores them when training stops)."""

    def __init__(self, model: DynamicsEnsemble) -> None:
        self.model = model
        self.errors = torch.full((model.n_members,), math.inf)
        self.params = self._member_params()

    def _member_params(self) -> dict[str, Tensor]:
        return {
            name: p.detach().clone()
            for name, p in self.model.named_parameters()
            if p.dim() and p.shape[0] == self.model.n_members and "logvar" not in name
        }

    def offer(self, errors: Tensor, improvement: float) -> bool:
        """Keep the members whose error fell by more than ``improvement`` (relative)."""
        errors = errors.cpu()
        better = (self.errors - errors) / self.errors > improvement
        better |= torch.isinf(self.errors) & torch.isfinite(errors)
        if better.any():
            now = self._member_params()
            for name, value in now.items():
                self.params[name][better.to(value.device)] = value[better.to(value.device)]
            self.errors[better] = errors[better]
        return bool(better.any())

    def restore(self) -> None:
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name in self.params:
                    p.copy_(self.params[name])


def train_dynamics(
    dataset: OfflineDataset,
    seed: int,
    config: DynamicsConfig | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[DynamicsEnsemble, dict[str, Any]]:
    """Train an ensemble on ``dataset`` from ``seed``; returns it and what training found
    (held-out MSE per member, elites, epochs, seconds, split sizes, one-step errors in data
    units, and on a relabelled dataset what it sees of the hazard)."""
    c = (config or DynamicsConfig()).validated()
    device = torch.device(device)
    start = time.perf_counter()
    inputs, targets, states = _arrays(dataset, device)
    n = len(inputs)
    g = torch.Generator().manual_seed(seed)
    hold, train = (rows.to(device) for rows in holdout_split(n, c.holdout_ratio, g))
    if not len(hold) or not len(train):
        raise UserError(f"dataset {dataset.provenance.id}: too few rows ({n}) to hold out data")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DynamicsEnsemble(dataset.obs_dim, dataset.act_dim, task_of_dataset(dataset), c)
    model.to(device)
    model.fit_statistics(inputs[train], targets[train], states)
    x_all = ((inputs - model.in_mean) / model.in_std).clamp(-INPUT_CLIP, INPUT_CLIP)
    y_all = model.normalise_targets(targets)
    x_hold, y_hold = x_all[hold], y_all[hold]
    boot = train[torch.randint(len(train), (c.n_members, len(train)), generator=g).to(device)]
    optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
    best = _BestWeights(model)
    best.offer(model.heldout_mse(x_hold, y_hold), c.improvement)
    since, lowered, epoch = 0, False, 0
    tick = progress.tracker(
        f"dynamics model {dataset.provenance.id}", c.max_epochs, "epoch", bar=True
    )
    while epoch < c.max_epochs:
        _train_epoch(model, optimizer, x_all, y_all, boot, c.batch_size, g)
        epoch += 1
        tick(epoch)
        errors = model.heldout_mse(x_hold, y_hold)
        since = 0 if best.offer(errors, c.improvement) else since + 1
        if log is not None:
            log(f"epoch {epoch}: held-out MSE per member {[round(float(e), 5) for e in errors]}")
        if since >= c.patience:
            if epoch >= c.min_epochs:
                break
            if not lowered:
                for group in optimizer.param_groups:
                    group["lr"] *= c.lr_drop
                lowered, since = True, 0
    tick.close(epoch)
    best.restore()
    errors = model.heldout_mse(x_hold, y_hold)
    model.elites.copy_(select_elites(errors, c.n_elites))
    info = {
        "heldout_mse": [float(e) for e in errors],
        "elites": [int(i) for i in model.elites],
        "epochs": epoch,
        "train_seconds": round(time.perf_counter() - start, 3),
        "n_train": len(train),
        "n_holdout": len(hold),
        **one_step_errors(model, inputs[hold], targets[hold]),
        # what it sees of the data's hazard on the held-out rows, from a stream of its own
        "hazard": penalty_fidelity(
            model, dataset, hold.cpu().numpy(), torch.Generator(device=device).manual_seed(seed)
        ),
    }
    return model, info


def holdout_split(n: int, ratio: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(held-out rows, training rows) of n: the first int(n x ratio) of a random order."""
    perm = torch.randperm(n, generator=generator)
    n_hold = int(n * ratio)
    return perm[:n_hold], perm[n_hold:]


@torch.no_grad()
def one_step_errors(model: DynamicsEnsemble, inputs: Tensor, targets: Tensor) -> dict[str, float]:
    """Held-out one-step MSE in data units, of the elites' mean prediction: of the next
    state against a model that predicts no change (s' = s), and of the reward."""
    ds = model.obs_dim
    obs, actions = inputs[:, :ds], inputs[:, ds:]
    state_se = reward_se = 0.0
    for start in range(0, len(obs), 8192):
        chunk = slice(start, start + 8192)
        mean, _ = model.predict(obs[chunk], actions[chunk])
        error = mean[model.elites].mean(dim=0) - targets[chunk]
        state_se += float(error[:, :-1].pow(2).mean(dim=-1).sum())
        reward_se += float(error[:, -1].pow(2).sum())
    n = max(len(obs), 1)
    return {
        "heldout_state_mse": state_se / n,
        "no_change_state_mse": float(targets[:, :-1].pow(2).mean()) if len(obs) else 0.0,
        "heldout_reward_mse": reward_se / n,
    }


def _train_epoch(
    model: DynamicsEnsemble,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    boot: Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """One pass over each member's bootstrap resample, in a fresh shared order."""
    order = torch.randperm(boot.shape[1], generator=generator).to(boot.device)
    for start in range(0, len(order), batch_size):
        rows = boot[:, order[start : start + batch_size]]  # [E, b]
        loss, _ = model.loss(x[rows], y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


# ----------------------------------------------------------------------------- the cache


def data_digest(dataset: OfflineDataset) -> str:
    """sha256 of the arrays the model learns from (observations, actions, rewards, next
    observations). Not the file's hash: a hazard relabels rewards of the same file."""
    h = hashlib.sha256()
    for key in ("observations", "actions", "rewards", "next_observations"):
        h.update(np.ascontiguousarray(getattr(dataset, key), dtype=np.float32).tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where trained models live: ``models/`` beside the generated datasets, under
    ``$RAMAC_DATA_DIR`` or ``<repo>/data``."""
    return default_data_dir().parent / "models"


def cache_path(
    dataset: OfflineDataset, seed: int, config: DynamicsConfig, cache_dir: Path | None = None
) -> Path:
    """``<cache_dir>/<dataset id>-<data sha256[:8]>-s<seed>-<config hash>.pt``."""
    name = dataset.provenance.id.replace("/", "_").replace("\\", "_") or "dataset"
    where = default_cache_dir() if cache_dir is None else Path(cache_dir)
    return where / f"{name}-{data_digest(dataset)[:8]}-s{seed}-{config.digest()}.pt"


def _save(path: Path, model: DynamicsEnsemble, record: dict[str, Any]) -> None:
    state = {
        "obs_dim": model.obs_dim,
        "act_dim": model.act_dim,
        "task": model.task,
        "config": dataclasses.asdict(model.config),
        "weights": {k: v.cpu() for k, v in model.state_dict().items()},
        "record": record,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=2, default=str) + "\n")


def load_dynamics(path: Path, device: str | torch.device = "cpu") -> DynamicsEnsemble:
    """The ensemble saved at ``path`` by :func:`ensure_dynamics`."""
    try:
        state = load_torch_file(path, map_location=device)
        config = DynamicsConfig(
            **{**state["config"], "weight_decays": tuple(state["config"]["weight_decays"])}
        )
        model = DynamicsEnsemble(state["obs_dim"], state["act_dim"], state["task"], config)
        model.load_state_dict(state["weights"])
        model.record = state.get("record", {})
    except Exception as exc:  # noqa: BLE001 - any failure to read is a damaged file
        raise UserError(f"{path}: not a readable dynamics model ({problem_of(exc)})") from None
    return model.to(device)


def _cached_dynamics(path: Path, device: str | torch.device) -> DynamicsEnsemble | None:
    """The cached ensemble at ``path``, or None when there is none. A cache that does not
    read (empty, cut, random bytes, or a pickle that would need more than tensors) is moved
    to the cache's ``corrupt/`` with a one-line warning, and the model is trained anew."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return load_dynamics(path, device)
    except UserError as exc:
        move_aside(path, str(exc).split(": ", 1)[-1], then="the model is trained anew")
        return None


def ensure_dynamics(
    dataset: OfflineDataset,
    seed: int,
    config: DynamicsConfig | None = None,
    cache_dir: Path | None = None,
    device: str | torch.device = "cpu",
) -> DynamicsEnsemble:
    """The ensemble for (dataset, seed, config): loaded from the cache, else trained and
    saved there (:func:`default_cache_dir` by default) with ``<name>.json`` recording its
    provenance, held-out errors and what it sees of the data's hazard. Processes that want the same
    model wait on a lock file, so it is trained once however many runs start together; its
    record is ``model.record``."""
    c = (config or DynamicsConfig()).validated()
    path = cache_path(dataset, seed, c, cache_dir)
    if cache_dir is None:
        claim_data_folder()
    check_inside(path.with_suffix(".lock"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        cached = _cached_dynamics(path, device)
        if cached is not None:
            return cached
        model, info = train_dynamics(dataset, seed, c, device)
        model.record = {
            "dataset": dataset.provenance.to_dict(),
            "data_sha256": data_digest(dataset),
            "seed": seed,
            "config": dataclasses.asdict(c),
            "task": model.task,
            **info,
        }
        _save(path, model, model.record)
    return model


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """A model's record (``model.record``) as one flat table row: what the report shows."""
    keys = ("seed", "epochs", "train_seconds", "n_train", "n_holdout", "heldout_state_mse",
            "no_change_state_mse", "heldout_reward_mse")  # fmt: skip
    row = {("model_seed" if k == "seed" else k): record.get(k) for k in keys}
    row["model_data_sha256"] = record.get("data_sha256")
    return row | {f"hazard_{k}": v for k, v in (record.get("hazard") or {}).items()}
