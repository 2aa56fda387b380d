"""Every table and report states its budget, and says NOT the paper's budget when it is not."""

import html

import pandas as pd
import yaml

from ramac.config import CONFIG_DIR
from reports.budget import budget_of
from reports.html import budget_html


def test_a_smoke_budget_is_stated_and_flagged(tmp_path, make_suite_records):
    out = make_suite_records(tmp_path / "s")
    budget = budget_of(pd.read_csv(out / "summary.csv"), out)
    assert budget.profile == "smoke"  # from the runs' config.yaml
    assert budget.differences == ["updates per run", "seeds", "evaluation episodes per seed"]
    assert budget.sentence() == (
        "Budget (profile 'smoke'): 20 updates per run, 2 seeds, 2 evaluation episodes per "
        "seed. NOT the paper's budget (the paper's: 2,000,000 updates per run, 5 seeds, 10 "
        "evaluation episodes per seed); updates 1e-05 x the paper's, and schedule lengths "
        "(eta warm-up and ramp, EMA start, lr decay) are stated against the paper's budget "
        "and scaled by the same factor."
    )
    box = budget_html(budget)
    assert 'class="budget not-paper"' in box and "2 (paper: 10)" in box
    assert "20 (paper: 2,000,000)" in box


def test_the_paper_budget_says_so_without_a_warning(tmp_path, make_suite_records):
    out = make_suite_records(tmp_path / "p", seeds=range(5), episodes=10, steps=2_000_000)
    summary = pd.read_csv(out / "summary.csv").assign(profile="paper")  # a column wins
    budget = budget_of(summary, out)
    assert budget.is_paper and budget.profile == "paper"
    assert budget.sentence() == (
        "Budget (profile 'paper'): the paper's, 2,000,000 updates per run, 5 seeds, 10 "
        "evaluation episodes per seed."
    )
    box = html.unescape(budget_html(budget))
    assert "NOT" not in box and "5 (the paper's)" in box and 'class="budget"' in box


def test_the_paper_profile_with_fewer_seeds_is_not_the_papers_budget(tmp_path, make_suite_records):
    out = make_suite_records(tmp_path / "p", seeds=range(2), episodes=10, steps=2_000_000)
    budget = budget_of(pd.read_csv(out / "summary.csv"), None)
    assert budget.profile is None and budget.differences == ["seeds"]
    text = budget.sentence()
    assert text.startswith("Budget (profile not recorded): 2,000,000 updates per run, 2 seeds")
    assert "NOT the paper's budget" in text and "schedule" not in text


def test_the_bandit_counts_actions_against_its_own_paper_profile(tmp_path, make_bandit_records):
    summary = make_bandit_records(tmp_path / "b", seeds=(0,))
    paper = yaml.safe_load((CONFIG_DIR / "suites" / "bandit.yaml").read_text())
    steps, seeds = paper["profiles"]["paper"]["steps"], paper["profiles"]["paper"]["seeds"]
    budget = budget_of(summary, tmp_path / "b")
    assert (budget.paper_steps, budget.paper_seeds) == (steps, seeds)
    assert budget.paper_draws == paper["eval"]["n_actions"]
    assert budget.ours() == "20 updates per run, 1 seed, 200 actions sampled per policy per seed"
    assert f"(the paper's: {steps:,} updates per run, {seeds} seeds" in budget.sentence()


def test_an_unknown_suite_falls_back_to_the_recorded_schedule_scale():
    summary = pd.DataFrame(
        {"suite": "mine", "dataset": "d", "algo": "a", "seed": [0, 1, 2]}
        | {"train_steps": 50, "schedule_scale": 0.5, "n_episodes": 4}
    )
    budget = budget_of(summary)
    assert budget.paper_steps == 100 and budget.differences == ["updates per run"]
    unknown = budget_of(summary.drop(columns="schedule_scale"))
    assert "The paper's budget is not known" in unknown.sentence()
