"""Every algorithm setting is checked, by type and range, when its config is made.

``ramac.config_checks`` holds one rule per field name; ``make_config`` applies it to the
resolved config and names where a bad value came from (the algorithm's YAML file and
dataset, or the run's overrides) in one line.
"""

import dataclasses
from collections.abc import Sequence

import pytest

import ramac.config
from ramac.agents import AGENTS, make_agent, make_config
from ramac.agents.base import yaml_name
from ramac.agents.radac import RADAC, RADACConfig
from ramac.config import CONFIG_DIR, read_yaml
from ramac.config_checks import ANY, RULES, Rule, check_config, describe, type_problem
from ramac.errors import UserError


def _datasets(name: str) -> list[str | None]:
    return [
        None,
        *(read_yaml(CONFIG_DIR / "algos" / f"{yaml_name(name)}.yaml").get("overrides") or {}),
    ]


def test_every_field_of_every_config_has_a_rule():
    """No field goes unchecked: each has a range rule, or says ANY ("any value of its
    type") explicitly; and the table names no field that no Config has."""
    fields = {f.name for entry in AGENTS.values() for f in dataclasses.fields(entry.config_cls)}
    missing = sorted(fields - set(RULES))
    assert not missing, f"add these fields to ramac.config_checks.RULES: {missing}"
    assert sorted(set(RULES) - fields) == []
    assert all(isinstance(rule, Rule) or callable(rule) for rule in RULES.values())
    assert RULES["normalize_q"] is ANY  # switches are explicitly free


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_defaults_and_every_yaml_override_pass(name):
    check_config(AGENTS[name].config_cls())
    for dataset in _datasets(name):
        check_config(make_config(name, dataset))  # make_config checks too; this says so
        check_config(make_config(name, dataset, schedule_scale=0.001))


def test_checking_changes_no_value():
    """Checks never convert: an int given to a float field stays the int it was, so a
    resolved config (and the hash of its run folder) is what it was before checks."""
    config = make_config("radac", "bandit", {"eta": 1, "q_clip": 150})
    assert type(config.eta) is int and type(config.q_clip) is int


# (algorithm, override, key, allowed, value as printed)
BAD = {
    "negative lr": ("radac", {"lr_actor": -1}, "lr_actor", "> 0", "-1"),
    "zero lr": ("bc", {"lr": 0.0}, "lr", "> 0", "0.0"),
    "zero count": ("radac", {"batch_size": 0}, "batch_size", ">= 1", "0"),
    "zero quantiles": ("oraac", {"n_policy_quantiles": 0}, "n_policy_quantiles", ">= 1", "0"),
    "zero width in a list": (
        "oraac",
        {"actor_hidden": [16, 0]},
        "actor_hidden",
        ">= 1 (every element)",
        "[16, 0]",
    ),
    "gamma above 1": ("diffusion_ql", {"gamma": 1.5}, "gamma", "in [0, 1]", "1.5"),
    "gamma below 0": ("cql", {"gamma": -0.1}, "gamma", "in [0, 1]", "-0.1"),
    "polyak tau 0": ("fql", {"tau": 0}, "tau", "in (0, 1]", "0"),
    "ema decay": ("radac", {"ema_decay": 2.0}, "ema_decay", "in [0, 1]", "2.0"),
    "negative schedule": ("radac", {"eta_warmup_steps": -5}, "eta_warmup_steps", ">= 0", "-5"),
    "negative weight": ("codac", {"cql_weight": -1.0}, "cql_weight", ">= 0", "-1.0"),
    "negative grad norm": ("rafmac", {"grad_norm": -0.6}, "grad_norm", ">= 0", "-0.6"),
    "cvar alpha": ("radac", {"risk_param": 1.5}, "risk_param", "in (0, 1] for risk cvar", "1.5"),
    "cvar alpha 0": ("codac", {"risk_param": 0.0}, "risk_param", "in (0, 1] for risk cvar", "0.0"),
    "cpw exponent": (
        "radac",
        {"risk": "cpw", "risk_param": -1.0},
        "risk_param",
        "> 0 for risk cpw",
        "-1.0",
    ),
    "tuned temperature 0": (
        "cql",
        {"entropy_tuning": True, "alpha": 0.0},
        "alpha",
        "> 0 with entropy_tuning",
        "0.0",
    ),
    "odd time embedding": ("bc", {"time_dim": 5}, "time_dim", "an even number >= 4", "5"),
    "string for int": ("radac", {"n_quantiles": "twenty"}, "n_quantiles", "an int", '"twenty"'),
    "float for int": ("radac", {"n_quantiles": 1.5}, "n_quantiles", "an int", "1.5"),
    "string for float": ("radac", {"lr_critic": "3e-4"}, "lr_critic", "a finite number", '"3e-4"'),
    "NaN": ("radac", {"eta": float("nan")}, "eta", "a finite number", "NaN"),
    "bool for int": ("radac", {"batch_size": True}, "batch_size", "an int", "true"),
    "bool for float": ("fql", {"alpha": False}, "alpha", "a finite number", "false"),
    "int for bool": ("radac", {"normalize_q": 1}, "normalize_q", "true or false", "1"),
    "int for str": ("radac", {"risk": 1}, "risk", "a string", "1"),
    "string for list": (
        "oraac",
        {"actor_hidden": "wide"},
        "actor_hidden",
        "a list of ints",
        '"wide"',
    ),
    "unknown activation": (
        "radac",
        {"critic_activation": "tanh"},
        "critic_activation",
        "one of relu, leaky_relu",
        '"tanh"',
    ),
    "unknown risk": ("codac", {"risk": "optimism"}, "risk", "one of neutral, cvar", '"optimism"'),
    "unknown prior": ("oraac", {"prior": "gan"}, "prior", "one of vae, diffusion, flow", '"gan"'),
    "unknown aggregation": ("fql", {"q_agg": "max"}, "q_agg", "one of mean, min", '"max"'),
    "unknown weighting": (
        "radac",
        {"tau_weighting": "median"},
        "tau_weighting",
        "one of",
        '"median"',
    ),
    "None for float": ("radac", {"lr_critic": None}, "lr_critic", "a finite number", "null"),
    "None for int": ("radac", {"n_steps": None}, "n_steps", "an int", "null"),
    "clip 0": ("radac", {"q_clip": 0.0}, "q_clip", "> 0", "0.0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_value_is_one_line_naming_key_value_and_allowed(case):
    name, overrides, key, allowed, shown = BAD[case]
    with pytest.raises(UserError) as err:
        make_config(name, "bandit", overrides)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{name} override: config {key} must be {allowed}"), message
    assert message.endswith(f", got {shown}"), message


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("radac", {"q_clip": None}),  # X | None takes null
        ("cvae_ql", {"latent_clip": None, "latent_dim": None}),
        ("cql", {"target_entropy": None, "entropy_tuning": False, "alpha": 0.0}),  # fixed: may be 0
        ("radac", {"risk": "wang", "risk_param": -0.75}),
        ("radac", {"risk": "neutral"}),  # neutral ignores the CVaR alpha left in risk_param
        ("rafmac", {"risk": "power", "risk_param": 2.0}),
        ("radac", {"lr_actor": 1, "gamma": 1, "tau": 1}),  # ints are numbers
        ("oraac", {"actor_hidden": (8, 8)}),
        ("bc", {"grad_norm": 0.0, "lr_decay_steps": 0}),  # 0 = off
    ],
)
def test_allowed_edge_values_pass(name, overrides):
    make_config(name, "bandit", overrides)


def test_a_bad_yaml_value_names_the_file_and_dataset(monkeypatch, tmp_path):
    (tmp_path / "algos").mkdir()
    (tmp_path / "algos" / "radac.yaml").write_text(
        "overrides:\n  some-data-v2: {lr_actor: -1.0, n_quantiles: 8}\n"
    )
    monkeypatch.setattr(ramac.config, "CONFIG_DIR", tmp_path)
    with pytest.raises(UserError) as err:
        make_config("radac", "some-data-v2")
    assert str(err.value) == (
        "configs/algos/radac.yaml [some-data-v2]: config lr_actor must be > 0, got -1.0"
    )
    # a run's override of the same key is named as the override, not as the file
    with pytest.raises(UserError, match=r"^radac override: config lr_actor must be > 0"):
        make_config("radac", "some-data-v2", {"lr_actor": -2.0})
    assert make_config("radac", "some-data-v2", {"lr_actor": 1e-4}).lr_actor == 1e-4
    # a caller can say where its overrides came from (a suite file and profile)
    with pytest.raises(UserError, match=r"^suite.yaml \[quick\]: config batch_size must be >= 1"):
        make_config("radac", None, {"batch_size": 0}, overrides_from="suite.yaml [quick]")


def test_a_config_built_directly_is_checked_by_the_agent():
    with pytest.raises(UserError, match=r"^RADACConfig: config lr_actor must be > 0, got -1.0$"):
        RADAC(3, 2, 1.0, RADACConfig(lr_actor=-1.0))


@pytest.mark.parametrize("value", ["cuda", "cpu", "gpu7"])
def test_a_device_in_a_config_is_refused_in_one_line(value, monkeypatch, tmp_path):
    """The device is chosen with --device only: an override or a YAML file that sets it
    is one line naming where it came from (before any work), whatever its value."""
    with pytest.raises(UserError) as err:
        make_config("radac", "bandit", {"device": value})
    assert str(err.value) == (
        "radac override: device: the device is chosen with --device (make: DEVICE=), "
        "never in a config"
    )
    (tmp_path / "algos").mkdir()
    (tmp_path / "algos" / "radac.yaml").write_text("overrides:\n  some-data-v2: {device: cuda}\n")
    monkeypatch.setattr(ramac.config, "CONFIG_DIR", tmp_path)
    with pytest.raises(UserError, match=r"^configs/algos/radac.yaml \[some-data-v2\]: device: "):
        make_config("radac", "some-data-v2")


def test_make_agent_checks_before_building():
    with pytest.raises(UserError, match=r"^cql override: config cql_temp must be > 0, got 0.0$"):
        make_agent("cql", 3, 2, 1.0, overrides={"cql_temp": 0.0})


def test_a_field_without_a_rule_is_a_bug_not_a_user_error():
    @dataclasses.dataclass
    class NewConfig:
        batch_size: int = 4
        brand_new_setting: float = 1.0

    with pytest.raises(LookupError, match="NewConfig.brand_new_setting has no rule"):
        check_config(NewConfig())


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        (3, int, None),
        (True, int, "an int"),
        (3, float, None),
        (float("inf"), float, "a finite number"),
        (None, float | None, None),
        ("x", float | None, "a finite number or null"),
        ([1, 2], Sequence[int], None),
        ([1, 2.5], Sequence[int], "a list of ints"),
        ((1.0, 2.0), tuple[float, ...], None),
        ((1.0, "a"), tuple[float, ...], "a list of numbers"),
        ([0.1, 0.2], tuple[float, float], None),
        ([0.1], tuple[float, float], "a list of numbers"),
        (["a"], list[str], None),
        ("yes", bool, "true or false"),
    ],
)
def test_types_as_configs_read_them(value, hint, expected):
    assert type_problem(value, hint) == expected
    assert describe(hint)
