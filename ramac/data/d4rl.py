"""D4RL gym-mujoco datasets (v2, and the v0 files ORAAC used), read with h5py alone (never
the d4rl or mujoco-py packages).

``load_d4rl`` finds (or downloads) the hdf5 file, validates it, and converts it with
:func:`qlearning_dataset`, which reproduces ``d4rl.qlearning_dataset`` bit for bit by
default, because CORL, Diffusion-QL and RAMAC all train on that output (``qlearning_dataset``
in d4rl/__init__.py of Farama-Foundation/D4RL). Terminal rows additionally keep the file's
stored post-step state
(``end_rows`` / ``end_observations``), so a fall is judged on the fallen pose, not on
the next episode's reset pose that d4rl puts in ``next_observations``.

Evaluation simulator: D4RL collected every gym-mujoco version (v0 and v2) in the mujoco-py
classes ``gym.envs.mujoco.{HalfCheetah,Hopper,Walker2d}Env`` (D4RL
``d4rl/gym_mujoco/gym_envs.py``), i.e. gym's v2 envs. Gymnasium's **v4** classes keep their
model files, rewards and termination on the official ``mujoco`` bindings (checked: the
compiled v4 models equal the compiled gym model files, README "Where we differ"); **v5**
changed Walker2d's right-foot friction from 0.9 to 1.9 and withholds the healthy reward on
the falling step (Gymnasium ``gymnasium/envs/mujoco/walker2d_v5.py``, version history). So
D4RL data is evaluated in v4.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from ramac.config import env_folder
from ramac.data.dataset import OfflineDataset, Provenance, check_arrays, check_dataset
from ramac.errors import UserError

BASE_URLS = {  # DATASET_URLS in d4rl/infos.py of Farama-Foundation/D4RL
    "v0": "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco",
    "v2": "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2",
}
BASE_URL = BASE_URLS["v2"]
VERSIONS = tuple(BASE_URLS)
KINDS = ("random", "medium", "medium-replay", "medium-expert", "expert")

# Reference scores: d4rl/infos.py of Farama-Foundation/D4RL (v0 and v2 share the random-v0 /
# expert values).
REF_SCORES = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
# observation / action sizes of the gym-mujoco tasks (D4RL and Gymnasium v4/v5 agree)
DIMS = {"halfcheetah": (17, 6), "hopper": (11, 3), "walker2d": (17, 6)}
# The Gymnasium envs whose model files, reward and termination match D4RL's collection
# envs (gym's mujoco-py v2 classes; see the module docstring).
COLLECTION_ENV_IDS = {
    "halfcheetah": "HalfCheetah-v4",
    "hopper": "Hopper-v4",
    "walker2d": "Walker2d-v4",
}
COLLECTION_ENV_SOURCE = "D4RL's collection dynamics (gym's v2 class = Gymnasium v4 model files)"
NO_NEXT_OBS_WARNING = (
    "the file stores no next_observations: falls (terminal rows) cannot be labelled by a hazard"
)

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_KEYS = ("next_observations", "timeouts")


@dataclasses.dataclass(frozen=True)
class D4RLInfo:
    """One D4RL dataset: where to get it and how to evaluate on it."""

    id: str  # e.g. "halfcheetah-medium-expert-v2"
    task: str
    kind: str
    file_name: str  # e.g. "halfcheetah_medium_expert-v2.hdf5" (d4rl caches it under this name)
    url: str
    env_id: str  # the Gymnasium env whose dynamics match the data's collection (v4)
    ref_min_score: float
    ref_max_score: float
    version: str = "v2"


def _file_name(task: str, kind: str, version: str) -> str:
    """The URL's file name, which d4rl also caches the file under (D4RL's d4rl/infos.py).

    v2: ``<task>_<kind with _>-v2.hdf5``; v0: ``<task>_<kind with _>.hdf5`` except that
    medium-replay is ``<task>_mixed.hdf5`` (Walker2d's: ``walker_mixed.hdf5``).
    """
    if version == "v2":
        return f"{task}_{kind.replace('-', '_')}-v2.hdf5"
    if kind == "medium-replay":
        return f"{'walker' if task == 'walker2d' else task}_mixed.hdf5"
    return f"{task}_{kind.replace('-', '_')}.hdf5"


def _info(task: str, kind: str, version: str = "v2") -> D4RLInfo:
    file_name = _file_name(task, kind, version)
    low, high = REF_SCORES[task]
    return D4RLInfo(
        f"{task}-{kind}-{version}",
        task,
        kind,
        file_name,
        f"{BASE_URLS[version]}/{file_name}",
        COLLECTION_ENV_IDS[task],
        low,
        high,
        version,
    )


D4RL_DATASETS: dict[str, D4RLInfo] = {
    info.id: info
    for info in (
        _info(task, kind, version) for version in VERSIONS for task in REF_SCORES for kind in KINDS
    )
}


# ----------------------------------------------------------------------------- files


def dataset_dir() -> Path:
    """Where D4RL files are cached: ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets`` (as d4rl);
    set but empty is an error (``ramac.config.env_folder``)."""
    return env_folder("D4RL_DATASET_DIR", Path.home() / ".d4rl" / "datasets")


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks (D4RL files are up to ~1 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def resolve_info(name: str) -> D4RLInfo:
    """The table entry of a dataset name (without a version suffix: ``-v2``)."""
    key = name if name.endswith(tuple(f"-{v}" for v in VERSIONS)) else f"{name}-v2"
    if key not in D4RL_DATASETS:
        raise UserError(
            f"unknown D4RL dataset '{name}' (known: <task>-<kind>-<version> with task in "
            f"{', '.join(REF_SCORES)}, kind in {', '.join(KINDS)}, version in "
            f"{', '.join(VERSIONS)})"
        )
    return D4RL_DATASETS[key]


def info_for_path(path: Path) -> D4RLInfo | None:
    """The table entry whose file name matches ``path`` (None for other files)."""
    for info in D4RL_DATASETS.values():
        if path.name in (info.file_name, f"{info.id}.hdf5"):
            return info
    return None


def download_file(url: str, dest: Path) -> None:
    """Fetch ``url`` to ``dest`` through a temporary name (a crash leaves no partial file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
        try:
            with (
                os.fdopen(fd, "wb") as out,
                tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar,
            ):
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
            Path(tmp).replace(dest)
        finally:
            Path(tmp).unlink(missing_ok=True)


def locate(info: D4RLInfo, allow_download: bool) -> Path:
    """The local file of ``info``; downloaded when missing and allowed and reachable."""
    directory = dataset_dir()
    for candidate in (directory / info.file_name, directory / f"{info.id}.hdf5"):
        if candidate.exists():
            return candidate
    dest = directory / info.file_name
    hint = f"put {info.file_name} (from {info.url}) into {directory} (or set D4RL_DATASET_DIR)"
    if not allow_download:
        raise UserError(f"D4RL dataset {info.id} is not available offline: {hint}")
    try:
        download_file(info.url, dest)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise UserError(f"cannot download D4RL dataset {info.id} ({reason}): {hint}") from None
    return dest


# ----------------------------------------------------------------------------- reading


def read_d4rl_hdf5(path: Path | str, task: str | None = None) -> dict[str, np.ndarray]:
    """The transition arrays of a D4RL-format hdf5 file, validated.

    Checks: the file is hdf5, required keys are present, every array has one row per step,
    float arrays are finite, and (when ``task`` is given or read from the file name) the
    observation and action sizes match the task. Each problem is a one-line UserError
    naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path}: not an hdf5 file")
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in REQUIRED_KEYS if not isinstance(f.get(key), h5py.Dataset)]
            if missing:
                raise UserError(f"{path}: missing key(s) {', '.join(missing)}")
            raw = {key: f[key][()] for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS) if key in f}
    except OSError as exc:
        raise UserError(f"{path}: cannot read the hdf5 file ({exc.__class__.__name__})") from None
    _validate(path, raw, task if task is not None else _task_from_name(path))
    return _normalise(raw)


def _task_from_name(path: Path) -> str | None:
    info = info_for_path(path)
    if info is not None:
        return info.task
    head = path.stem.split("-")[0].split("_")[0].lower()
    return head if head in DIMS else None


def _validate(path: Path, raw: dict[str, np.ndarray], task: str | None) -> None:
    """The checks of every source (``check_arrays``, before any cast), then the task's sizes."""
    check_arrays(raw, str(path))
    if task is None:
        return
    if task not in DIMS:
        raise UserError(f"{path}: unknown task '{task}' (known: {', '.join(DIMS)})")
    obs_dim, act_dim = DIMS[task]
    got = (raw["observations"].shape[1], raw["actions"].shape[1])
    if got != (obs_dim, act_dim):
        raise UserError(
            f"{path}: observation/action sizes {got[0]}/{got[1]} do not match task "
            f"{task} ({obs_dim}/{act_dim})"
        )


def _normalise(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in raw.items():
        if key in ("terminals", "timeouts"):
            out[key] = np.asarray(value).reshape(-1).astype(bool)
        elif key == "rewards":
            out[key] = np.asarray(value).reshape(-1).astype(np.float32)
        else:
            out[key] = np.asarray(value, dtype=np.float32)
    return out


# ----------------------------------------------------------------------------- conversion


def qlearning_dataset(
    raw: dict[str, np.ndarray],
    terminate_on_end: bool = False,
    keep_timeouts: bool = False,
    max_episode_steps: int = 1000,
) -> dict[str, np.ndarray]:
    """(s, a, r, s', done) transitions with ``d4rl.qlearning_dataset``'s exact semantics.

    Default (``qlearning_dataset`` in d4rl/__init__.py of Farama-Foundation/D4RL): rows
    ``i in range(N-1)`` (the last row is dropped);
    ``next_observations[i] = observations[i+1]`` (the stored ones are ignored); a row with
    ``timeouts[i]`` is skipped (without a timeouts key: a row where the step counter reaches
    ``max_episode_steps - 1``); terminal rows are kept with ``terminals=True``.
    ``terminate_on_end=True`` keeps the timed-out rows as d4rl does (next obs from the next
    row, done = the stored terminal).

    ``keep_timeouts=True`` (not d4rl): timed-out rows, and the final row, are kept with
    their *stored* ``next_observations`` and done = the stored terminal (False on a time
    limit); every other row is as in the default. ``timeouts`` flags the kept timed-out rows
    (always all False by default, since d4rl skips them); ``rows`` is the source row of
    each transition.

    ``end_rows`` (not d4rl): the output rows that end an episode but whose
    ``next_observations`` was taken from the next row (terminal rows; with
    ``terminate_on_end`` also timed-out rows), and ``end_observations`` their stored
    post-step state (NaN rows when the file has no ``next_observations``): what a hazard is
    decided on, since for a fall the next row is the next episode's reset pose.
    """
    n = len(raw["rewards"])
    final = _final_timesteps(raw, max_episode_steps)
    if keep_timeouts:
        if "next_observations" not in raw:
            raise UserError("keep_timeouts needs 'next_observations', which the dataset lacks")
        rows = np.arange(n)
        use_stored = np.append(final[: n - 1], True)  # timed-out rows and the final row
    else:
        rows = np.arange(n - 1)
        use_stored = np.zeros(n - 1, bool)
        if not terminate_on_end:
            rows, use_stored = rows[~final[: n - 1]], use_stored[~final[: n - 1]]
    next_obs = raw["observations"][np.minimum(rows + 1, n - 1)]
    if use_stored.any():
        next_obs[use_stored] = raw["next_observations"][rows[use_stored]]
    terminals = np.asarray(raw["terminals"], bool)
    end_rows = np.flatnonzero((terminals[rows] | final[rows]) & ~use_stored)
    if "next_observations" in raw:
        end_obs = raw["next_observations"][rows[end_rows]]
    else:
        end_obs = np.full((len(end_rows), raw["observations"].shape[1]), np.nan, np.float32)
    return {
        "observations": raw["observations"][rows],
        "actions": raw["actions"][rows],
        "next_observations": next_obs,
        "rewards": raw["rewards"][rows],
        "terminals": np.asarray(raw["terminals"], bool)[rows],
        "timeouts": final[rows],
        "rows": rows,
        "end_rows": end_rows,
        "end_observations": end_obs,
    }


def _final_timesteps(raw: dict[str, np.ndarray], max_episode_steps: int) -> np.ndarray:
    """d4rl's ``final_timestep`` per row: the timeouts key, else a step counter."""
    if "timeouts" in raw:
        return np.asarray(raw["timeouts"], bool)
    terminals = np.asarray(raw["terminals"], bool)
    final = np.zeros(len(terminals), bool)
    step = 0
    for i in range(len(terminals)):
        final[i] = step == max_episode_steps - 1
        step = 0 if (final[i] or terminals[i]) else step + 1
    return final


def to_offline_dataset(
    transitions: dict[str, np.ndarray], provenance: Provenance
) -> OfflineDataset:
    """Wrap :func:`qlearning_dataset`'s output in the toolkit's format."""
    return OfflineDataset(
        observations=transitions["observations"],
        actions=transitions["actions"],
        rewards=transitions["rewards"],
        next_observations=transitions["next_observations"],
        terminals=transitions["terminals"],
        timeouts=transitions["timeouts"],
        provenance=provenance,
        end_rows=transitions.get("end_rows"),
        end_observations=transitions.get("end_observations"),
    )


def unlabelled_end_rows(transitions: dict[str, np.ndarray]) -> int:
    """How many episode-end rows have no stored post-step state (a hazard cannot judge them)."""
    end_obs = transitions.get("end_observations")
    return 0 if end_obs is None else int(np.isnan(end_obs).any(axis=1).sum())


def recorded_env_id(path: Path) -> str | None:
    """The env id a file records in ``metadata/env_id`` (generated files do), else None."""
    with h5py.File(path, "r") as f:
        value = f.get("metadata/env_id")
        if not isinstance(value, h5py.Dataset):
            return None
        value = value[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def load_d4rl(
    name_or_path: str, *, download: bool = True, keep_timeouts: bool = False
) -> OfflineDataset:
    """A D4RL dataset by name (``hopper-medium-expert-v2``, ``hopper-medium-v0``) or by path.

    A name is looked up in ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets`` and downloaded
    there when missing (if ``download`` and the network allow); offline, a one-line
    UserError says which file to put where. The file is validated (:func:`read_d4rl_hdf5`)
    and so is what training will see (:func:`ramac.data.dataset.check_dataset`): a command
    that loads it before any work starts fails as training would, in one line.
    """
    candidate = Path(name_or_path).expanduser()
    if name_or_path.endswith((".hdf5", ".h5")) or candidate.exists():
        path, info = candidate, info_for_path(candidate)
    else:
        info = resolve_info(name_or_path)
        path = locate(info, download)
    raw = read_d4rl_hdf5(path, info.task if info else None)
    transitions = qlearning_dataset(raw, keep_timeouts=keep_timeouts)
    extra = {
        "path": str(path),
        "rows_in_file": len(raw["rewards"]),
        "keep_timeouts": keep_timeouts,
        "unlabelled_end_rows": unlabelled_end_rows(transitions),
    }
    if "next_observations" not in raw:
        extra["warning"] = NO_NEXT_OBS_WARNING
    return check_dataset(to_offline_dataset(transitions, _provenance(path, info, extra)))


def _provenance(path: Path, info: D4RLInfo | None, extra: dict[str, Any]) -> Provenance:
    """Where the data came from, and the simulator it was collected in: the file's own
    ``metadata/env_id`` when it records one, else D4RL's collection env (the table's)."""
    recorded = recorded_env_id(path)
    task = info.task if info is not None else _task_from_name(path)
    env_id = recorded or COLLECTION_ENV_IDS.get(task, "")
    extra["env_source"] = (
        "file metadata/env_id" if recorded else COLLECTION_ENV_SOURCE if env_id else "none"
    )
    if info is None:
        low, high = REF_SCORES.get(task, (None, None))
        return Provenance(
            source="d4rl",
            id=path.stem,
            sha256=file_sha256(path),
            env_id=env_id,
            ref_min_score=low,
            ref_max_score=high,
            extra=extra,
        )
    extra["url"] = info.url
    if info.version != "v2":  # hyperparameters per dataset are keyed by the v2 names
        extra["config_key"] = f"{info.task}-{info.kind}-v2"
    return Provenance(
        source="d4rl",
        id=info.id,
        version=info.version,
        sha256=file_sha256(path),
        env_id=env_id,
        ref_min_score=info.ref_min_score,
        ref_max_score=info.ref_max_score,
        extra=extra,
    )


def ensure_card(path: Path, task: str) -> dict[str, Any]:
    """The dataset card of a D4RL file (``ramac.data.cards``), written beside it when missing
    and printed; says when falls cannot be labelled. A read-only folder only skips the write.

    A file that has a card is checked against it (size and sha256) and the result printed
    in one line; one that differs (cut short, replaced by another file) is a one-line
    UserError: a D4RL file cannot be made again here, so the user decides.
    """
    from ramac.data.cards import (
        card_mismatch,
        dataset_card,
        file_facts,
        format_card,
        read_card,
        write_card,
    )

    card = read_card(path)
    if card is not None:
        problem = card_mismatch(path, card)
        if problem:
            raise UserError(
                f"{path}: {problem}: the file changed since its card was written; restore it "
                f"(or download it again), or delete the card to accept this file"
            )
        if card.get("sha256"):
            print(f"{path}: checked ({card.get('bytes', '?')} bytes and sha256 match its card)")
        return card
    info = {"id": path.stem, "file": path.name, **file_facts(path)}
    card = dataset_card(read_d4rl_hdf5(path, task), task, **info)
    try:
        write_card(card, path)
    except OSError:
        pass
    print(format_card(card), flush=True)
    return card
