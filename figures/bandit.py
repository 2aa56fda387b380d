"""The bandit figure (paper Figure 3): the data, then each method's actions on the same axes.

Drawn from the records alone: the behaviour data is regenerated from its seed and each
method's actions are read from ``runs/<algo>/seed<k>/actions.npz``.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ramac.agents.base import AGENTS, _load_all  # noqa: E402
from ramac.envs.bandit import BanditSpec, make_dataset, mode_fractions  # noqa: E402
from ramac.io import atomic_savefig  # noqa: E402

PANEL_POINTS = 2_000  # actions drawn per panel (pooled over seeds, then subsampled)


def _pooled_actions(out: Path, runs: list[str], algo: str, rng: np.random.Generator) -> np.ndarray:
    files = [out / "runs" / algo / run / "actions.npz" for run in runs]
    if not files:
        return np.zeros((0, 2))
    actions = np.concatenate([np.load(f)["actions"] for f in files])
    keep = rng.permutation(len(actions))[:PANEL_POINTS]
    return actions[keep]


def _style(ax: plt.Axes, spec: BanditSpec, title: str) -> None:
    theta = np.linspace(0, 2 * np.pi, 200)
    ax.plot(spec.ring_radius * np.cos(theta), spec.ring_radius * np.sin(theta), "k:", lw=0.6)
    ax.plot(spec.zone_radius * np.cos(theta), spec.zone_radius * np.sin(theta), "k--", lw=0.4)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_xticks([-1, 0, 1])
    ax.set_yticks([-1, 0, 1])
    ax.set_title(title, fontsize=9)


def plot_bandit(
    out: Path, spec: BanditSpec, data_seed: int, algos: list[str], summary: pd.DataFrame
) -> list[Path]:
    """Write ``bandit.png`` and ``bandit.pdf`` into ``out``; returns their paths.

    Each method's panel pools the actions of the runs listed in ``summary`` (its ``run``
    column names the run folders), so runs of other profiles in ``out`` are left out.
    """
    _load_all()
    dataset, penalised = make_dataset(spec, data_seed)
    n_panels = len(algos) + 1
    cols = min(5, n_panels)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.75 * rows), squeeze=False)
    flat = axes.ravel()

    ax = flat[0]
    a = dataset.actions
    ax.scatter(a[~penalised, 0], a[~penalised, 1], s=1, c="tab:blue", alpha=0.25, lw=0)
    ax.scatter(
        a[penalised, 0], a[penalised, 1], s=3, c="tab:purple", alpha=0.9, lw=0, label="penalty"
    )
    ax.legend(loc="lower left", fontsize=6, markerscale=3, frameon=False)
    _style(ax, spec, "(a) Data (purple: penalty)")

    rng = np.random.default_rng(0)
    for i, algo in enumerate(algos, start=1):
        ax = flat[i]
        ax.scatter(a[:, 0], a[:, 1], s=1, c="0.85", lw=0)
        runs = summary.loc[summary["algo"] == algo, "run"].tolist()
        actions = _pooled_actions(out, runs, algo, rng)
        name = AGENTS[algo].display_name
        if len(actions):
            ax.scatter(actions[:, 0], actions[:, 1], s=2, c="tab:red", alpha=0.5, lw=0)
            fr = mode_fractions(actions, spec)
            name += f"\ncentre {100 * fr['centre_frac']:.0f}%  ring {100 * fr['ring_frac']:.0f}%"
        _style(ax, spec, f"({chr(ord('a') + i)}) {name}")
    for ax in flat[n_panels:]:
        ax.axis("off")
    fig.tight_layout()
    paths = [out / "bandit.png", out / "bandit.pdf"]
    for path in paths:
        atomic_savefig(fig, path, dpi=150)
    plt.close(fig)
    return paths
