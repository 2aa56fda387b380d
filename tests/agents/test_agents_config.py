"""The registry and the algorithm YAML files: every setting builds, mistakes are UserErrors."""

import dataclasses

import pytest

from ramac.agents import AGENTS, make_agent, make_config
from ramac.agents.oraac import ORAAC, ORAACConfig, ORAACDiffConfig, ORAACFlowConfig
from ramac.config import CONFIG_DIR, algo_values, read_yaml
from ramac.errors import UserError

SIX = [
    f"{env}-{kind}-v2"
    for env in ("halfcheetah", "hopper", "walker2d")
    for kind in ("medium-expert", "medium-replay")
]


def test_registry_names_and_display_names():
    assert {name: entry.display_name for name, entry in AGENTS.items()} == {
        "radac": "RADAC",
        "rafmac": "RAFMAC",
        "rafmac_public": "RAFMAC (public code)",
        "oraac": "ORAAC",
        "oraac_diff": "ORAAC-Diff.",
        "oraac_flow": "ORAAC-Flow",
        "oraac_published": "ORAAC (published settings)",
        "diffusion_ql": "Diffusion-QL",
        "fql": "FQL",
        "cvae_ql": "CVAE-QL",
        "bc": "BC",
        "cql": "CQL",
        "codac": "CODAC",
    }
    for name, (config_cls, _agent_cls, display) in AGENTS.items():  # rows unpack as tuples
        assert dataclasses.is_dataclass(config_cls) and isinstance(display, str)
        assert (CONFIG_DIR / "algos" / f"{name}.yaml").exists(), name
        assert "batch_size" in {f.name for f in dataclasses.fields(config_cls)}
        assert "device" in {f.name for f in dataclasses.fields(config_cls)}


def _datasets(name: str) -> list[str | None]:
    return [None, *(read_yaml(CONFIG_DIR / "algos" / f"{name}.yaml").get("overrides") or {})]


@pytest.mark.parametrize("name, dataset", [(n, d) for n in sorted(AGENTS) for d in _datasets(n)])
def test_every_default_and_override_builds(name, dataset):
    config = make_config(name, dataset)
    assert isinstance(config, AGENTS[name].config_cls)
    # The YAML states every value (defaults included): nothing falls back silently.
    values = algo_values(name, dataset)
    assert {k: getattr(config, k) for k in values} == values


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_yaml_defaults_state_every_field(name):
    defaults = read_yaml(CONFIG_DIR / "algos" / f"{name}.yaml")["defaults"]
    fields = {f.name for f in dataclasses.fields(AGENTS[name].config_cls)}
    assert set(defaults) == fields


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
