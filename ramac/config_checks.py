"""The allowed values of every algorithm setting, checked when a config is made.

A resolved config (``ramac.agents.base.make_config``: the Config dataclass's defaults, the
dataset's overrides in ``configs/algos/<algo>.yaml``, a run's own overrides) is checked
field by field before any work starts, so that ``lr_actor: -1`` in a suite file ends the
command in one line instead of a traceback hours into training:

1. its type, from the dataclass annotation: an ``int`` field takes an int (not ``true``), a
   ``float`` field any finite number, a ``str`` field a string, a ``bool`` field true or
   false, an ``X | None`` field also null, a ``Sequence[int]`` field a list of ints;
2. its range, from :data:`RULES`: one rule per field name, the same meaning in every
   algorithm (a field whose meaning differs, ``alpha`` or ``risk_param``, has a rule that
   reads the fields it depends on). Every field of every registered Config must have a
   rule (:data:`ANY` says "any value of its type" explicitly; a test checks the table).

The first problem is a :class:`~ramac.errors.UserError` naming where the value came from,
the key, the allowed values and the value::

    configs/algos/radac.yaml [bandit]: config lr_actor must be > 0, got -1

The sets of names the agents accept (activations, quantile-loss weightings, distortions,
priors, target aggregations) are read from where they are used or defined here, once.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import json
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ramac.errors import BRIEF_CHARS, UserError, brief
from ramac.nets.iqn import ACTIVATIONS, TAU_WEIGHTINGS
from ramac.risk import DEFAULT_PARAMS

PRIORS = ("vae", "diffusion", "flow")  # ORAAC's behaviour prior (ramac.agents.oraac)
TARGET_AGGS = ("mean", "min")  # twin-Q target aggregation (ramac.agents.common.twin_q_loss)


class Rule(NamedTuple):
    """Which values of a field are allowed: ``ok(value)``, stated as ``allowed`` in errors.

    A rule sees values that already have the field's type and are not None (None is allowed
    exactly when the annotation says ``| None``); in a list each element is checked.
    """

    allowed: str  # completes "must be ...": "> 0", "in [0, 1]", "one of relu, leaky_relu"
    ok: Callable[[Any], bool]


def one_of(choices: collections.abc.Iterable[str]) -> Rule:
    """A name from ``choices``."""
    choices = tuple(choices)
    return Rule(f"one of {', '.join(choices)}", lambda v: v in choices)


ANY = Rule("any value of its type", lambda v: True)
POSITIVE = Rule("> 0", lambda v: v > 0)
NON_NEGATIVE = Rule(">= 0", lambda v: v >= 0)
AT_LEAST_ONE = Rule(">= 1", lambda v: v >= 1)
PROBABILITY = Rule("in [0, 1]", lambda v: 0 <= v <= 1)
RATE = Rule("in (0, 1]", lambda v: 0 < v <= 1)
EVEN_AT_LEAST_4 = Rule("an even number >= 4", lambda v: v >= 4 and v % 2 == 0)

# The distortion parameter, by distortion (ramac.risk): CVaR's alpha is a tail fraction,
# CPW's exponent must be positive; Wang's shift and the power exponent take any sign, and
# neutral ignores it.
RISK_PARAMS: dict[str, Rule] = {
    "neutral": ANY,
    "cvar": Rule("in (0, 1] for risk cvar (the tail fraction alpha)", RATE.ok),
    "wang": ANY,
    "cpw": Rule("> 0 for risk cpw", POSITIVE.ok),
    "power": ANY,
}


def _risk_param(config: Any) -> Rule:
    return RISK_PARAMS.get(config.risk, ANY)


def _alpha(config: Any) -> Rule:
    """CQL / CODAC's entropy temperature starts at log(alpha) when tuned; FQL's alpha, a
    distillation weight, and a fixed temperature may be 0."""
    if getattr(config, "entropy_tuning", False):
        return Rule("> 0 with entropy_tuning (its log is learned)", POSITIVE.ok)
    return NON_NEGATIVE


# Field name -> rule (or a function of the whole config giving the rule), alphabetical
# within each group.
RULES: dict[str, Rule | Callable[[Any], Rule]] = {
    # learning rates
    **dict.fromkeys(
        ("lr", "lr_actor", "lr_alpha", "lr_alpha_prime", "lr_critic", "lr_prior"), POSITIVE
    ),
    # discount, Polyak and EMA rates
    "gamma": PROBABILITY,
    "tau": RATE,
    "ema_decay": PROBABILITY,
    # sizes and counts
    **dict.fromkeys(
        (
            "act_candidates",
            "actor_hidden",  # an int, or ORAAC's list of widths (each >= 1)
            "actor_layers",
            "batch_size",
            "cql_n_actions",
            "critic_hidden",
            "critic_layers",
            "ema_every",
            "embed_dim",
            "flow_steps",
            "head_hidden",
            "latent_dim",  # or null: 2 x the action size
            "n_cos",
            "n_critics",
            "n_penalty_quantiles",
            "n_policy_quantiles",
            "n_quantiles",
            "n_steps",
            "prior_hidden",
            "prior_layers",
            "prior_steps",
            "target_update_every",
            # RAVL's model rollouts and dynamics ensemble (ramac.agents.ravl)
            "model_batch_size",
            "model_elites",  # and <= model_members (ramac.models.dynamics.DynamicsConfig)
            "model_hidden",
            "model_layers",
            "model_max_epochs",
            "model_members",
            "model_patience",
            "retain_epochs",
            "rollout_batch",
            "rollout_every",
            "steps_k",
        ),
        AT_LEAST_ONE,
    ),
    "model_min_epochs": NON_NEGATIVE,
    "model_seed": NON_NEGATIVE,  # the one dynamics model of a dataset (ramac.agents.ravl)
    "dataset_ratio": PROBABILITY,  # the real share of a RAVL batch
    "model_lr": POSITIVE,
    "model_holdout": Rule("in (0, 1)", lambda v: 0 < v < 1),  # the held-out share
    "time_dim": EVEN_AT_LEAST_4,  # sin and cos of dim/2 frequencies spread over dim/2 - 1
    # steps of the lr's cosine scheduler over lr_decay_steps (0 = every update)
    "lr_decay_stairs": NON_NEGATIVE,
    # schedule lengths, in updates (0 = none)
    **dict.fromkeys(
        ("ema_start", "eta_ramp_steps", "eta_warmup_steps", "lr_decay_steps"), NON_NEGATIVE
    ),
    # loss weights and clips (grad_norm 0 = no clipping)
    **dict.fromkeys(
        ("cql_weight", "eta", "grad_norm", "kl_weight", "lambda_bc", "phi"), NON_NEGATIVE
    ),
    "alpha": _alpha,
    "cql_temp": POSITIVE,
    "latent_clip": POSITIVE,  # or null: not clipped
    "q_clip": POSITIVE,  # or null: not clipped
    **dict.fromkeys(("actor_action_gain", "prior_action_gain"), POSITIVE),
    # free numbers (any finite value, or null where the annotation allows it)
    **dict.fromkeys(("cql_threshold", "log_std_offset", "target_entropy"), ANY),
    # switches
    **dict.fromkeys(
        (
            "backup_entropy",
            "cql_lagrange",
            "critic_layer_norm",
            "entropy_tuning",
            "normalize_q",
            "normalize_states",
            "orthogonal_init",
            "sample_reward",
        ),
        ANY,
    ),
    # names
    "critic_activation": one_of(ACTIVATIONS),
    "prior": one_of(PRIORS),
    "q_agg": one_of(TARGET_AGGS),
    "risk": one_of(DEFAULT_PARAMS),
    "risk_param": _risk_param,
    "tau_weighting": one_of(TAU_WEIGHTINGS),
}


# ----------------------------------------------------------------------------- types


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has type ``hint`` as a config reads it (bool is not an int here)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is int:
        return isinstance(value, numbers.Integral)
    if hint is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_fits, value, args))
        return all(_fits(v, args[0]) for v in value) if args else True
    return isinstance(value, origin or hint)


_NAMES = {  # a type in words: one, and a list of them
    int: ("an int", "ints"),
    float: ("a finite number", "numbers"),
    str: ("a string", "strings"),
}


def describe(hint: Any) -> str:
    """``hint`` in words, as an error states it: "an int", "a list of ints or null"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true or false"
    if hint in _NAMES:
        return _NAMES[hint][0]
    if origin in (list, tuple, collections.abc.Sequence):
        element = args[0] if args else None
        return f"a list of {_NAMES[element][1]}" if element in _NAMES else "a list"
    return f"a {getattr(hint, '__name__', hint)}"


def type_problem(value: Any, hint: Any) -> str | None:
    """None when ``value`` fits type ``hint``, else what it should be ("an int")."""
    return None if _fits(value, hint) else describe(hint)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def show(value: Any) -> str:
    """A value as a YAML file would spell it (``true``, ``null``, ``"relu"``), on one short
    line; a list or mapping as :func:`~ramac.errors.brief` cuts it (bounded work)."""
    if isinstance(value, str):
        value = value[:BRIEF_CHARS]
    if value is None or isinstance(value, bool | int | float | str):
        text = json.dumps(value)
        return text if len(text) <= BRIEF_CHARS else text[: BRIEF_CHARS - 3] + "..."
    return brief(value)


# ----------------------------------------------------------------------------- checking


def rule_for(config: Any, name: str) -> Rule:
    """The rule of field ``name`` of ``config`` (a missing rule is a bug, not a user error)."""
    if name not in RULES:
        raise LookupError(
            f"{type(config).__name__}.{name} has no rule in ramac.config_checks.RULES"
        )
    rule = RULES[name]
    return rule if isinstance(rule, Rule) else rule(config)


def check_config(config: Any, sources: Mapping[str, str] | None = None) -> None:
    """Check every field of a Config dataclass instance: types first, then ranges.

    ``sources`` maps a field to where its value came from (``configs/algos/radac.yaml
    [bandit]``, ``radac override``); other fields are named by the Config class. The first
    problem is a one-line UserError: ``<where>: config <key> must be <allowed>, got <value>``.
    """
    fields = [f.name for f in dataclasses.fields(config)]
    hints = _hints(type(config))

    def fail(name: str, allowed: str) -> UserError:
        where = (sources or {}).get(name, type(config).__name__)
        value = show(getattr(config, name))
        return UserError(f"{where}: config {name} must be {allowed}, got {value}")

    for name in fields:
        expected = type_problem(getattr(config, name), hints[name])
        if expected is not None:
            raise fail(name, expected)
    for name in fields:
        rule, value = rule_for(config, name), getattr(config, name)
        if isinstance(value, list | tuple):
            if not all(rule.ok(v) for v in value):
                raise fail(name, f"{rule.allowed} (every element)")
        elif value is not None and not rule.ok(value):
            raise fail(name, rule.allowed)
