"""Typed settings blocks of a suite file, checked when a plan is made.

Every block of ``configs/suites/*.yaml`` (the suite, each profile, ``eval:``) is a frozen
dataclass read with :func:`typed`: an unknown key, a missing one, a wrong type or a value
out of range ends the command with one line naming the file, the block and the key, before
any job starts (a typo never trains for hours and then fails, nor falls back to a default).
The evaluation settings shared by the suite and the bandit are :class:`RiskSettings`; each
evaluation module adds its own (``eval.suite_run.EvalSettings``,
``eval.bandit.BanditEvalSettings``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Self, TypeVar

from ramac.config import build
from ramac.errors import UserError, brief
from ramac.risk import TAIL_RULES

T = TypeVar("T")


def typed(cls: type[T], values: Any, where: str) -> T:
    """``values`` (a YAML mapping) as settings ``cls``, every value checked.

    ``cls`` is a dataclass with a ``validated(where)`` method that checks its values and
    returns the settings with their nested blocks typed. ``where`` names the file and block
    (``configs/suites/bandit.yaml [profiles.smoke]``) in every error.
    """
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {brief(values)}")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in values]
    if missing and set(values) <= {f.name for f in fields}:  # else build names the unknown
        raise UserError(f"{where}: missing key(s) {', '.join(missing)}")
    return build(cls, values, where).validated(where)  # type: ignore[attr-defined]


def whole(where: str, key: str, value: Any, minimum: int = 1) -> int:
    """``value`` when it is a whole number >= ``minimum`` (not a bool, not 2.0)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{where}: {key} must be a whole number >= {minimum}, got {brief(value)}")
    return value


def number(
    where: str, key: str, value: Any, *, above: float | None = None, at_most: float | None = None
) -> float:
    """``value`` when it is a finite number in (``above``, ``at_most``] (either side open)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (above is None or value > above) and (at_most is None or value <= at_most)
    if not ok:
        low = "(-inf" if above is None else f"({above:g}"
        high = "inf)" if at_most is None else f"{at_most:g}]"
        raise UserError(f"{where}: {key} must be a number in {low}, {high}, got {brief(value)}")
    return value


def one_of(where: str, key: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` when it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        known = ", ".join(str(c) for c in choices)
        raise UserError(f"{where}: {key} must be one of {known}, got {brief(value)}")
    return value


def names(where: str, key: str, value: Any) -> list[str]:
    """``value`` when it is a non-empty list of strings (algorithm or dataset names)."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: {key} must be a non-empty list of names, got {brief(value)}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class RiskSettings:
    """How a run's outcomes are scored, for the suite and the bandit alike.

    No defaults: the suite file states each value (and why), so it is written once.
    """

    alpha: float  # CVaR level, in (0, 1]
    cvar_rule: str  # tail rule of the CVaR estimate (ramac.risk.TAIL_RULES)
    kappa: float  # OOD threshold, in units of the data's mean leave-one-out 1-NN distance
    kappa_sweep: tuple[float, ...]  # thresholds whose OOD rates are recorded beside kappa's
    bootstrap_reps: int  # bootstrap replicates of the tables' intervals

    def validated(self, where: str) -> Self:
        number(where, "alpha", self.alpha, above=0, at_most=1)
        one_of(where, "cvar_rule", self.cvar_rule, TAIL_RULES)
        number(where, "kappa", self.kappa, above=0)
        if not isinstance(self.kappa_sweep, list | tuple):
            raise UserError(f"{where}: kappa_sweep must be a list of numbers > 0")
        for kappa in self.kappa_sweep:
            number(where, "kappa_sweep", kappa, above=0)
        whole(where, "bootstrap_reps", self.bootstrap_reps)
        # a tuple: settings are hashable (a process's cached detector is keyed by them)
        return dataclasses.replace(self, kappa_sweep=tuple(self.kappa_sweep))

    def record(self) -> dict[str, Any]:
        """The settings as the suite file states them, for ``config.yaml`` and hashing; unset
        options are left out, so a record is the same whether an option is absent or was
        added after it was made."""
        values = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values if v is not None}
