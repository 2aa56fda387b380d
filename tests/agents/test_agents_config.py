"""The registry and the algorithm YAML files: every setting builds, mistakes are UserErrors.

Defaults live only in the Config dataclasses; ``configs/algos/*.yaml`` hold only per-dataset
``overrides:`` (``ramac/config.py`` says why, and how variants get their own defaults).
"""

import dataclasses

import pytest

import ramac.config
from ramac.agents import AGENTS, make_agent, make_config
from ramac.agents.base import dataset_values, override_files, yaml_name
from ramac.agents.oraac import ORAAC, ORAACConfig, ORAACDiffConfig, ORAACFlowConfig
from ramac.agents.rafmac import RAFMAC_OWN
from ramac.config import CONFIG_DIR, config_hash, read_yaml
from ramac.errors import UserError
from ramac.nets.diffusion import DiffusionActor
from ramac.nets.flow import FlowActor

SIX = [
    f"{env}-{kind}-v2"
    for env in ("halfcheetah", "hopper", "walker2d")
    for kind in ("medium-expert", "medium-replay")
]


def test_registry_names_and_display_names():
    assert {name: entry.display_name for name, entry in AGENTS.items()} == {
        "radac": "RADAC",
        "radac_public_loss": "RADAC (public code's loss bug)",
        "rafmac": "RAFMAC",
        "rafmac_public": "RAFMAC (public code)",
        "oraac": "ORAAC",
        "oraac_diff": "ORAAC-Diff.",
        "oraac_flow": "ORAAC-Flow",
        "oraac_published": "ORAAC (published settings)",
        "diffusion_ql": "Diffusion-QL",
        "diffusion_ql_flow": "Diffusion-QL (flow)",
        "diffusion_ql_annealed": "Diffusion-QL (annealed lr)",
        "diffusion_ql_flow_annealed": "Diffusion-QL (flow, annealed lr)",
        "fql": "FQL",
        "cvae_ql": "CVAE-QL",
        "bc": "BC",
        "cql": "CQL",
        "codac": "CODAC",
        "ravl": "RAVL",
        "ravl_cvar": "RAVL (CVaR)",
    }
    for name, (config_cls, _agent_cls, display, _yaml_of) in AGENTS.items():
        assert dataclasses.is_dataclass(config_cls) and isinstance(display, str)
        assert (CONFIG_DIR / "algos" / f"{yaml_name(name)}.yaml").exists(), name
        assert "batch_size" in {f.name for f in dataclasses.fields(config_cls)}
        # one source for the device: the builder (--device), never a config
        assert "device" not in {f.name for f in dataclasses.fields(config_cls)}


def test_public_loss_variant_is_radac_with_the_public_loss():
    """RADAC (public code's loss bug) differs from RADAC in the critic's loss alone, on
    every dataset, its overrides read from radac.yaml."""
    for dataset in [None, *SIX, "bandit"]:
        public, radac = make_config("radac_public_loss", dataset), make_config("radac", dataset)
        assert public.tau_weighting == "target" and radac.tau_weighting == "current"
        assert dataclasses.asdict(public) == dataclasses.asdict(radac) | {"tau_weighting": "target"}


def _datasets(name: str) -> list[str | None]:
    return [
        None,
        *(read_yaml(CONFIG_DIR / "algos" / f"{yaml_name(name)}.yaml").get("overrides") or {}),
    ]


@pytest.mark.parametrize("name, dataset", [(n, d) for n in sorted(AGENTS) for d in _datasets(n)])
def test_every_default_and_override_builds(name, dataset):
    config = make_config(name, dataset)
    assert isinstance(config, AGENTS[name].config_cls)
    # Every override is applied as written; every other field is the dataclass default.
    values, _ = dataset_values(name, dataset)
    assert {k: getattr(config, k) for k in values} == values
    defaults = AGENTS[name].config_cls()
    for field in dataclasses.fields(config):
        if field.name not in values:
            assert getattr(config, field.name) == getattr(defaults, field.name), field.name
    if dataset is None:
        assert values == {} and config == defaults


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_yaml_holds_only_overrides_of_config_fields(name):
    """One source per default: the YAML has no ``defaults:`` block, and every key under
    ``overrides:`` names a field of the algorithm's Config dataclass."""
    fields = {f.name for f in dataclasses.fields(AGENTS[name].config_cls)}
    for stem in override_files(name):
        data = read_yaml(CONFIG_DIR / "algos" / f"{stem}.yaml")
        assert set(data) <= {"overrides"}, f"{stem}.yaml: only 'overrides:' belongs at the top"
        for dataset, values in (data.get("overrides") or {}).items():
            assert isinstance(values or {}, dict), (stem, dataset)
            assert set(values or {}) <= fields, (stem, dataset, sorted(set(values) - fields))


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_config_field_has_a_default(name):
    """make_config(name) needs no YAML value: the dataclass alone is a complete config."""
    for field in dataclasses.fields(AGENTS[name].config_cls):
        has_default = field.default is not dataclasses.MISSING
        assert has_default or field.default_factory is not dataclasses.MISSING, field.name


def _with_algo_yaml(monkeypatch, tmp_path, text: str) -> None:
    """Point the config loader at a directory whose radac.yaml is ``text``."""
    (tmp_path / "algos").mkdir()
    (tmp_path / "algos" / "radac.yaml").write_text(text)
    monkeypatch.setattr(ramac.config, "CONFIG_DIR", tmp_path)


def test_a_defaults_block_is_a_user_error(monkeypatch, tmp_path):
    _with_algo_yaml(monkeypatch, tmp_path, "defaults:\n  eta: 0.02\noverrides: {}\n")
    with pytest.raises(UserError, match="defaults"):
        make_config("radac", "halfcheetah-medium-expert-v2")


def test_unknown_top_level_key_is_a_user_error(monkeypatch, tmp_path):
    _with_algo_yaml(monkeypatch, tmp_path, "overides: {}\n")
    with pytest.raises(UserError, match="overides"):
        make_config("radac")


def test_unknown_yaml_override_key_is_a_user_error(monkeypatch, tmp_path):
    _with_algo_yaml(monkeypatch, tmp_path, "overrides:\n  some-data-v2: {no_such_key: 1}\n")
    with pytest.raises(UserError, match="no_such_key"):
        make_config("radac", "some-data-v2")
    assert make_config("radac", "other-data-v2") == make_config("radac")


def test_variants_state_only_what_differs_from_their_base():
    """Variants are registered with a Config subclass (or their base's Config) that holds
    their defaults; their YAML files hold only per-dataset overrides."""
    assert make_config("oraac_published") == make_config("oraac")
    assert AGENTS["oraac_published"].config_cls is ORAACConfig
    assert make_config("oraac").actor_hidden == [400, 300]


# RADAC's critic lr per dataset (configs/radac.yaml of KaiFukazawa/RAMAC @ f2c1ed6)
RADAC_CRITIC_LR = {
    "halfcheetah-medium-expert-v2": 5e-5,
    "halfcheetah-medium-replay-v2": 5e-5,
    "hopper-medium-expert-v2": 1e-5,
    "hopper-medium-replay-v2": 1e-5,
    "walker2d-medium-expert-v2": 1e-5,
    "walker2d-medium-replay-v2": 5e-6,
}


def test_rafmac_is_radac_with_a_flow_actor():
    """On each of the six datasets RAFMAC's resolved config is RADAC's (read from radac.yaml:
    critics, critic lr, TD-target clamp, lambda_bc, eta and warm-up) on every key but its
    flow actor's own (RAFMAC_OWN), whose values are pinned here."""
    assert override_files("rafmac") == ["radac", "rafmac"]
    for dataset in SIX:
        radac = dataclasses.asdict(make_config("radac", dataset))
        rafmac = dataclasses.asdict(make_config("rafmac", dataset))
        own = {k: rafmac.pop(k) for k in RAFMAC_OWN}
        assert rafmac == {k: v for k, v in radac.items() if k not in RAFMAC_OWN}, dataset
        grad_norm = 0.6 if "medium-expert" in dataset else 0.8  # the public rafmac.yaml
        assert own == {"grad_norm": grad_norm, "n_steps": 10, "actor_hidden": 128, "ema_start": 500}
        # what radac.yaml says, now RAFMAC's too (docs/fidelity.md, "RAFMAC = RADAC ...")
        assert rafmac["q_clip"] == (150.0 if dataset == "hopper-medium-replay-v2" else 300.0)
        assert rafmac["lambda_bc"] == (
            1.5 if dataset in ("hopper-medium-replay-v2", "walker2d-medium-expert-v2") else 1.0
        )
        assert rafmac["lr_critic"] == RADAC_CRITIC_LR[dataset]
        assert not rafmac["normalize_q"] and rafmac["risk"] == "cvar"


# rafmac_public's settings before RAFMAC took RADAC's (the public design), pinned: every
# dataset resolves to these, with grad_norm 0.6 on medium-expert and 0.8 on medium-replay.
RAFMAC_PUBLIC = dict(
    lr_actor=3e-4,
    lr_critic=3e-4,
    lambda_bc=1.0,
    eta=1000.0,
    eta_warmup_steps=0,
    eta_ramp_steps=0,
    normalize_q=True,
    risk="neutral",
    risk_param=None,
    q_clip=None,
    n_quantiles=32,
    critic_hidden=128,
    embed_dim=128,
    n_cos=32,
    head_hidden=128,
    n_steps=10,
    actor_hidden=128,
    actor_layers=3,
    time_dim=16,
    ema_start=500,
    ema_every=5,
    ema_decay=0.995,
    batch_size=256,
    gamma=0.99,
    tau=0.005,
    n_critics=2,
    critic_activation="relu",
    tau_weighting="current",
    actor_action_gain=1.0,
)


def test_rafmac_public_keeps_the_public_design():
    for dataset in SIX:
        config = dataclasses.asdict(make_config("rafmac_public", dataset))
        grad_norm = 0.6 if "medium-expert" in dataset else 0.8
        assert config == RAFMAC_PUBLIC | {"grad_norm": grad_norm}, dataset


def test_paper_datasets_have_radac_and_rafmac_overrides():
    for name in ("radac", "rafmac"):
        assert set(SIX) <= set(_datasets(name))
    assert make_config("radac", "walker2d-medium-replay-v2").n_quantiles == 8
    assert make_config("radac", "hopper-medium-replay-v2").q_clip == 150.0
    assert make_config("rafmac", "hopper-medium-replay-v2").grad_norm == 0.8
    assert make_config("diffusion_ql", "hopper-medium-expert-v2").grad_norm == 5.0
    assert make_config("oraac_published", "halfcheetah-medium-expert-v2").risk == "wang"


def test_unknown_override_key_is_a_user_error():
    with pytest.raises(UserError, match="no_such_key"):
        make_agent("radac", 3, 2, 1.0, overrides={"no_such_key": 1})


def test_unknown_algorithm_lists_the_known_ones():
    with pytest.raises(UserError, match="radac"):
        make_agent("radak", 3, 2, 1.0)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("radac", {"risk": "optimism"}),
        ("radac", {"risk": "cvar", "risk_param": 1.5}),
        ("radac", {"critic_activation": "tanh"}),
        ("radac", {"device": "gpu7"}),
        ("oraac", {"prior": "gan"}),
        ("radac", {"tau_weighting": "median"}),
        ("oraac_flow", {"tau_weighting": "Target"}),
        ("codac", {"tau_weighting": "median"}),
        ("fql", {"q_agg": "max"}),
    ],
)
def test_bad_choices_are_user_errors(name, overrides):
    with pytest.raises(UserError):
        make_agent(name, 3, 2, 1.0, overrides={"batch_size": 4, **overrides})


def test_oraac_family_shares_one_agent_with_different_priors():
    assert AGENTS["oraac"].agent_cls is AGENTS["oraac_diff"].agent_cls is ORAAC
    assert (ORAACConfig().prior, ORAACDiffConfig().prior, ORAACFlowConfig().prior) == (
        "vae",
        "diffusion",
        "flow",
    )


@pytest.mark.parametrize("name", ["oraac", "oraac_diff", "oraac_flow"])
def test_oraac_family_optimises_cvar_01_on_every_dataset(name):
    """The paper's table reports CVaR_0.1 and treats the ORAAC family as CVaR_0.1 methods."""
    for dataset in [None, *SIX]:
        config = make_config(name, dataset)
        assert (config.risk, config.risk_param) == ("cvar", 0.1), dataset
        assert (config.gamma, config.tau) == (0.99, 0.005), dataset


def test_oraac_published_keeps_the_authors_per_task_settings():
    hopper = make_config("oraac_published", "hopper-medium-replay-v2")
    assert (hopper.gamma, hopper.tau, hopper.critic_hidden) == (0.9, 0.05, 128)
    cheetah = make_config("oraac_published", "halfcheetah-medium-replay-v2")
    assert (cheetah.risk, cheetah.risk_param) == ("wang", -0.75)


def test_tau_weighting_current_keeps_the_run_folder_hash():
    """A run keyed before ``tau_weighting`` existed keeps its folder at the default; the
    public code's weighting keys a folder of its own."""
    resolved = dataclasses.asdict(make_config("radac", "hopper-medium-expert-v2"))
    assert resolved["tau_weighting"] == "current"
    before = {k: v for k, v in resolved.items() if k != "tau_weighting"}
    assert config_hash({"algo": resolved, "steps": 5}) == config_hash({"algo": before, "steps": 5})
    target = resolved | {"tau_weighting": "target"}
    assert config_hash({"algo": target, "steps": 5}) != config_hash({"algo": before, "steps": 5})


def test_diffusion_ql_flow_is_diffusion_ql_with_a_flow_actor():
    assert isinstance(make_agent("diffusion_ql_flow", 3, 2, 1.0).actor, FlowActor)
    assert isinstance(make_agent("diffusion_ql", 3, 2, 1.0).actor, DiffusionActor)
    # Diffusion-QL's settings everywhere but the sampler's steps, which are RAFMAC's flow's.
    for dataset in [None, *SIX, "bandit"]:
        flow = dataclasses.asdict(make_config("diffusion_ql_flow", dataset))
        ddpm = dataclasses.asdict(make_config("diffusion_ql", dataset))
        steps = make_config("rafmac", dataset if dataset == "bandit" else None).n_steps
        assert flow.pop("n_steps") == steps, dataset
        ddpm.pop("n_steps")
        assert flow == ddpm, f"{dataset}: configs/algos/diffusion_ql_flow.yaml out of step"


def test_annealed_variants_differ_from_their_base_in_the_lr_schedule_alone():
    """diffusion_ql(_flow)_annealed: the base's settings on every dataset (read from its
    YAML), the lr annealed to 0 over the run per update instead of the official stairs."""
    for base in ("diffusion_ql", "diffusion_ql_flow"):
        assert isinstance(
            make_agent(f"{base}_annealed", 3, 2, 1.0), type(make_agent(base, 3, 2, 1.0))
        )
        for dataset in [None, *SIX, "bandit"]:
            annealed = dataclasses.asdict(make_config(f"{base}_annealed", dataset))
            official = dataclasses.asdict(make_config(base, dataset))
            assert official.pop("lr_decay_stairs") == 2000 and annealed.pop("lr_decay_stairs") == 0
            off = dataset == "bandit"  # constant lr in both (lr_decay_steps 0)
            assert official.pop("lr_decay_steps") == (0 if off else 100_000_000)
            assert annealed.pop("lr_decay_steps") == (0 if off else 2_000_000)
            assert annealed == official, (base, dataset)
