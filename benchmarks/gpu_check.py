"""The prepared device check (issue 24): parity, throughput and the paper profile's GPU-hours.

A maintainer with a GPU runs this once (``make gpu-check``, under 5 minutes on one H100)
and gets one Markdown report:

- **parity**: RADAC and RAFMAC trained for ``--parity-updates`` updates from one seed on the
  CPU and on the device, fp32 with TF32 off, drawing the same random numbers (every draw is
  made on the CPU's stream and moved to the device, so only the arithmetic differs): their
  logged losses and the critic's CVaR on a fixed batch must agree within ``PARITY_RTOL``;
  then the bandit's smoke panel trained and evaluated on the device;
- **throughput**: updates per second of RADAC, RAFMAC, Diffusion-QL, ORAAC and CQL at their
  HalfCheetah-ME configs, one seed and a 5-seed stack, TF32 off and on, without and with
  ``--compile``; and the public-code-style RADAC of ``benchmarks/bench_train.py`` on the
  same device (the anchor every ratio is taken against);
- **projection**: the GPU-hours of the whole paper profile (every method x dataset x 5 seeds
  x 2M updates) from those rates, with and without seed stacks.

Cases run cheapest first; compiled cases run while ``--budget`` seconds remain, and any
that do not fit are listed as skipped, so the report always arrives. Without a GPU it runs
on the CPU (``--device cpu --quick``: tiny budgets, no compilation), which is how the test
suite checks it (``tests/test_gpu_check.py``).

    python benchmarks/gpu_check.py                     # auto: the GPU when one is visible
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check.md
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train, run as a script
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the checkout

from bench_train import ACT, BATCH, OBS, BaselineRADAC, random_batch  # noqa: E402

from ramac.agents.base import make_agent  # noqa: E402
from ramac.config import PAPER_STEPS  # noqa: E402
from ramac.data.dataset import Batch  # noqa: E402
from ramac.device import resolve_device  # noqa: E402
from ramac.runtime import keep_freed_memory  # noqa: E402
from ramac.seed_parallel import SeedStack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASET = "halfcheetah-medium-expert-v2"  # every rate is at this dataset's config
THROUGHPUT_ALGOS = ("radac", "rafmac", "diffusion_ql", "oraac", "cql")
PARITY_ALGOS = ("radac", "rafmac")
PARITY_RTOL = 1e-3  # fp32, TF32 off, the same random numbers: only summation order differs
STACK = 5  # the paper's seeds, trained as one stack
PAPER_DATASETS = 6
GOAL_SEED_UPDATES = 1_000  # RADAC, one 5-seed stack, seed-updates/s (issue 24)
GOAL_RATIO = 10.0  # ... against the public-code-style baseline on the same GPU
GOAL_HOURS = 100.0  # the whole paper profile


@dataclass
class Budget:
    """How long each measurement runs: the full check, or ``--quick`` (CI, the CPU)."""

    parity_updates: int = 200
    warmup: int = 5
    seconds: float = 2.0  # timed per case, after the warm-up
    min_updates: int = 10
    bandit_steps: int | None = None  # the smoke profile's
    bandit_algos: tuple[str, ...] = ("radac", "bc")  # with bandit_steps: a subset
    compile: bool = True
    project: bool = True  # measure the suite's other methods too, for the projection


QUICK = Budget(
    parity_updates=5,
    warmup=1,
    seconds=0.0,
    min_updates=1,
    bandit_steps=4,
    compile=False,
    project=False,
)


# ----------------------------------------------------------------------------- devices


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matrix products and convolutions on or off for the block (CUDA only)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


_DRAWS = ("rand", "randn", "randint", "randperm")
_LIKE = ("rand_like", "randn_like")


@contextlib.contextmanager
def cpu_random_numbers() -> Iterator[None]:
    """Every unseeded torch draw is made on the CPU's stream and moved to its device.

    CUDA's generator is another stream than the CPU's, so a run on the GPU would otherwise
    see other noise from the same seed and its losses could only agree in law. With this
    block around both runs they draw the same numbers and differ only in arithmetic."""
    originals = {name: getattr(torch, name) for name in (*_DRAWS, *_LIKE)}

    def drawn_on_cpu(name: str) -> Callable:
        draw = originals[name]

        def wrapper(*args, device=None, generator=None, **kwargs):
            if generator is not None or device is None or torch.device(device).type == "cpu":
                return draw(*args, device=device, generator=generator, **kwargs)
            return draw(*args, generator=generator, **kwargs).to(device)

        return wrapper

    def like_on_cpu(name: str) -> Callable:
        draw = originals[name]

        def wrapper(tensor, *args, **kwargs):
            if tensor.device.type == "cpu" or "device" in kwargs:
                return draw(tensor, *args, **kwargs)
            return draw(tensor, *args, device="cpu", **kwargs).to(tensor.device)

        return wrapper

    try:
        for name in _DRAWS:
            setattr(torch, name, drawn_on_cpu(name))
        for name in _LIKE:
            setattr(torch, name, like_on_cpu(name))
        yield
    finally:
        for name, function in originals.items():
            setattr(torch, name, function)


# ----------------------------------------------------------------------------- builders


def build_agent(algo: str, device: torch.device, seed: int = 0):
    """``algo`` at the HalfCheetah-ME config on ``device``, weights from ``seed``."""
    torch.manual_seed(seed)
    return make_agent(algo, OBS, ACT, 1.0, dataset=DATASET, device=device)


def stacked_update(algo: str, device: torch.device, seeds: int, compile: bool) -> Callable:
    """One training step of ``seeds`` seeds (a stack when more than one) on fixed batches,
    as the training loop runs it between logging steps: no value read back to the host."""
    generator = torch.Generator().manual_seed(1)
    batches = [random_batch(device, generator) for _ in range(seeds)]
    agents = [build_agent(algo, device, seed) for seed in range(seeds)]
    if seeds == 1:
        learner, data = agents[0], batches[0]
    else:
        learner, data = SeedStack(agents), batches
    if compile:
        learner.compile_losses()
    return lambda: learner.train_step(data, all_terminal=False)


def baseline_update(device: torch.device) -> Callable:
    """The public-code-style RADAC update of ``benchmarks/bench_train.py`` (one seed)."""
    torch.manual_seed(0)
    baseline = BaselineRADAC(device)
    batch = random_batch(device, torch.Generator().manual_seed(1))
    return lambda: baseline.update(batch)


# ----------------------------------------------------------------------------- parity


@dataclass
class Parity:
    algo: str
    updates: int
    worst_loss: str  # the logged value that differs most, relatively
    loss_rdiff: float
    cvar_cpu: float
    cvar_device: float

    @property
    def cvar_rdiff(self) -> float:
        return abs(self.cvar_device - self.cvar_cpu) / max(abs(self.cvar_cpu), 1e-12)

    @property
    def ok(self) -> bool:
        return self.loss_rdiff <= PARITY_RTOL and self.cvar_rdiff <= PARITY_RTOL


def critic_cvar(agent, batch: Batch, alpha: float = 0.1, levels: int = 32) -> float:
    """The first critic's CVaR_alpha of the batch's (s, a), averaged: the mean of its
    quantiles at ``levels`` evenly spaced levels in (0, alpha)."""
    taus = (torch.arange(levels, dtype=torch.float32) + 0.5) / levels * alpha
    taus = taus.to(batch.obs.device).expand(batch.obs.shape[0], -1)
    with torch.no_grad():
        z = agent.critic(batch.obs, batch.actions, taus)  # [E, B, N]
    return float(z[0].mean())


def train_for_parity(algo: str, device: torch.device, updates: int) -> tuple[dict, float]:
    """The last log row and the critic's CVaR after ``updates`` updates on ``device``."""
    generator = torch.Generator().manual_seed(2)
    batches = [random_batch(device, generator) for _ in range(updates)]
    fixed = random_batch(device, torch.Generator().manual_seed(3))
    with tf32(False), cpu_random_numbers():
        agent = build_agent(algo, device, seed=0)
        torch.manual_seed(1)
        row = {}
        for batch in batches:
            row = agent.update(batch)
        return row, critic_cvar(agent, fixed)


def parity(algo: str, device: torch.device, updates: int) -> Parity:
    """``algo`` trained on the CPU and on ``device`` from one seed with the same draws."""
    cpu_row, cpu_cvar = train_for_parity(algo, torch.device("cpu"), updates)
    row, cvar = train_for_parity(algo, device, updates)
    rdiffs = {
        name: abs(row[name] - value) / max(abs(value), 1e-6) for name, value in cpu_row.items()
    }
    worst = max(rdiffs, key=rdiffs.get)
    return Parity(algo, updates, worst, rdiffs[worst], cpu_cvar, cvar)


def bandit_panel(device: torch.device, report: Path, budget: Budget) -> str:
    """The bandit's smoke profile trained and evaluated on ``device`` in a fresh folder: its
    Markdown table, and its figure copied beside the report (``<report>-bandit.png``)."""
    command = [sys.executable, str(ROOT / "reproduce.py"), "bandit", "--profile", "smoke"]
    command += ["--device", str(device), "--workers", "1"]
    if budget.bandit_steps:
        command += ["--steps", str(budget.bandit_steps), "--algos", *budget.bandit_algos]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bandit"
        start = time.perf_counter()
        proc = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            return (
                f"The bandit's smoke profile FAILED on {device} (exit {proc.returncode}): {tail}\n"
            )
        figure = report.with_name(f"{report.stem}-bandit.png")
        shutil.copyfile(out / "bandit.png", figure)
        table = (out / "leaderboard.md").read_text()
    shown = " ".join(command[1:]).replace(str(ROOT) + "/", "")
    return f"`python {shown}`: {seconds:.0f} s; figure: `{figure.name}`.\n\n{table}"


# ----------------------------------------------------------------------------- throughput


@dataclass
class Rate:
    case: str
    algo: str
    seeds: int
    tf32: bool
    compiled: bool
    updates_per_s: float = float("nan")  # stack updates per second
    warmup_s: float = float("nan")  # the first updates (compilation included)
    note: str = ""

    @property
    def seed_updates_per_s(self) -> float:
        return self.updates_per_s * self.seeds


def measure(update: Callable, device: torch.device, budget: Budget) -> tuple[float, float]:
    """(updates per second, warm-up seconds): the warm-up updates, then as many updates
    as fill ``budget.seconds`` (at least ``budget.min_updates``), timed in three blocks;
    the median block's rate."""
    start = time.perf_counter()
    for _ in range(budget.warmup):
        update()
    synchronize(device)
    warmup = time.perf_counter() - start
    block = max(budget.min_updates, 1)
    rates = []
    deadline = time.perf_counter() + budget.seconds
    while len(rates) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(block):
            update()
        synchronize(device)
        rates.append(block / (time.perf_counter() - start))
    return statistics.median(rates), warmup


def throughput_cases(
    budget: Budget, algos: tuple[str, ...], others: tuple[str, ...], device: torch.device
) -> list[Rate]:
    """Every case, cheapest first: the anchor; each of ``algos`` uncompiled (1 seed and a
    stack; on a GPU with TF32 off and on); the suite's ``others`` as training runs them
    (uncompiled, TF32 off), for the projection; then ``algos`` compiled (TF32 off) when the
    budget compiles. On the CPU TF32 means nothing: its cases run once."""
    settings = (False, True) if device.type == "cuda" else (False,)
    cases = [Rate("baseline", "radac (public-code style)", 1, t, False) for t in settings]
    for algo in algos:
        for seeds in (1, STACK):
            cases += [Rate("ramac", algo, seeds, t, False) for t in settings]
    cases += [Rate("ramac", algo, seeds, False, False) for algo in others for seeds in (1, STACK)]
    if budget.compile:
        cases += [Rate("ramac", algo, seeds, False, True) for algo in algos for seeds in (1, STACK)]
    return cases


def projected_algos() -> tuple[list[str], list[str]]:
    """The Stochastic-D4RL suite's methods: (those whose updates a seed stack runs, the
    model-based ones whose rollouts it does not: left out of the projection)."""
    from pipeline.suite import SUITE_FILE, D4RLSuite
    from ramac.train import seed_stackable

    algos = D4RLSuite.read(SUITE_FILE).algos
    return [a for a in algos if seed_stackable(a)], [a for a in algos if not seed_stackable(a)]


def run_case(rate: Rate, device: torch.device, budget: Budget) -> Rate:
    with tf32(rate.tf32):
        if rate.case == "baseline":
            update = baseline_update(device)
        else:
            update = stacked_update(rate.algo, device, rate.seeds, rate.compiled)
        try:
            rate.updates_per_s, rate.warmup_s = measure(update, device, budget)
        except Exception as exc:  # noqa: BLE001 - a case that fails is reported, not fatal
            rate.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return rate


# ----------------------------------------------------------------------------- report


def projected_hours(rates: list[Rate], stacked: bool) -> tuple[float, list[str]]:
    """GPU-hours of every measured method x 6 datasets x 5 seeds x 2M updates at its rate
    as training runs it (uncompiled, TF32 off: torch's default, which training keeps), and
    the methods without a rate."""
    hours, missing = 0.0, []
    seeds = STACK if stacked else 1
    for algo in dict.fromkeys(r.algo for r in rates if r.case == "ramac"):
        found = [
            r for r in rates if (r.algo, r.seeds, r.tf32, r.compiled) == (algo, seeds, False, False)
        ]
        if not found or not found[0].updates_per_s > 0:
            missing.append(algo)
            continue
        runs = PAPER_DATASETS * (STACK // seeds)  # one process per stack, or per seed
        hours += runs * PAPER_STEPS / found[0].updates_per_s / 3600
    return hours, missing


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def header(device: torch.device) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return (
        "# Device check (`benchmarks/gpu_check.py`)\n\n"
        f"- when: {datetime.datetime.now().isoformat(timespec='seconds')}; commit "
        f"{commit or '?'}\n"
        f"- device: `{device}` ({device_name(device)}); torch {torch.__version__}, CUDA "
        f"{torch.version.cuda or 'none'}; {torch.get_num_threads()} CPU threads\n"
        f"- configs: {DATASET} (obs {OBS}, act {ACT}, batch {BATCH}); fp32\n\n"
    )


def rate_table(rates: list[Rate]) -> str:
    """The throughput table; ``x baseline``: seed-updates/s over the public-code-style
    RADAC's updates/s at the same TF32 setting."""
    anchor = {r.tf32: r.updates_per_s for r in rates if r.case == "baseline"}
    rows = [
        "| method | seeds | TF32 | compiled | updates/s | seed-updates/s | x baseline | "
        "warm-up s | note |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rates:
        base = anchor.get(r.tf32, 0.0)
        ratio = r.seed_updates_per_s / base if base > 0 else float("nan")
        rows.append(
            f"| {r.algo} | {r.seeds} | {'on' if r.tf32 else 'off'} | "
            f"{'yes' if r.compiled else 'no'} | {r.updates_per_s:,.1f} | "
            f"{r.seed_updates_per_s:,.1f} | {ratio:.2f} | {r.warmup_s:.1f} | {r.note} |"
        )
    return "\n".join(rows) + "\n"


def parity_section(device: torch.device, budget: Budget) -> tuple[str, bool]:
    """The parity table, and whether every method is within tolerance."""
    checks = [parity(algo, device, budget.parity_updates) for algo in PARITY_ALGOS]
    rows = [
        "## Parity: the CPU against the device\n\n",
        f"{budget.parity_updates} updates from seed 0, fp32, TF32 off, the same random numbers "
        f"(drawn on the CPU); tolerance: relative difference <= {PARITY_RTOL:g}.\n\n",
        "| method | worst logged value | its relative difference | critic CVaR_0.1, CPU | "
        "on the device | relative difference | within tolerance |\n",
        "|---|---|---:|---:|---:|---:|---|\n",
    ]
    if device.type == "cpu":
        rows.insert(
            2, "The device is the CPU: this compares the CPU with itself (the code path).\n\n"
        )
    rows += [
        f"| {c.algo} | {c.worst_loss} | {c.loss_rdiff:.2e} | {c.cvar_cpu:.6g} | "
        f"{c.cvar_device:.6g} | {c.cvar_rdiff:.2e} | {'yes' if c.ok else 'NO'} |\n"
        for c in checks
    ]
    return "".join(rows) + "\n", all(c.ok for c in checks)


def throughput_section(
    device: torch.device, budget: Budget, algos: tuple[str, ...], deadline: float
) -> str:
    """The throughput table and the paper profile's projection from it."""
    stackable, model_based = projected_algos()
    others = tuple(a for a in stackable if a not in algos) if budget.project else ()
    rates = []
    for rate in throughput_cases(budget, algos, others, device):
        if rate.compiled and time.perf_counter() > deadline:
            rate.note = "skipped: past the time budget"
        else:
            run_case(rate, device, budget)
        rates.append(rate)
        print(
            f"  {rate.algo} x{rate.seeds} TF32 {'on' if rate.tf32 else 'off'}"
            f"{' compiled' if rate.compiled else ''}: {rate.updates_per_s:,.1f} updates/s "
            f"{rate.note}",
            file=sys.stderr,
            flush=True,
        )
    unit = "GPU-hours" if device.type == "cuda" else f"{device.type.upper()}-hours"
    flat, missing = projected_hours(rates, stacked=False)
    stacked, _ = projected_hours(rates, stacked=True)
    measured = [
        a for a in dict.fromkeys(r.algo for r in rates if r.case == "ramac") if a not in missing
    ]
    text = [
        "## Throughput\n\n",
        f"Per case: {budget.warmup} warm-up update(s), then blocks of {max(budget.min_updates, 1)} "
        f"updates for {budget.seconds:g} s (three blocks at least), the median block's rate; "
        "a training step as the loop runs it between logging steps (nothing read back). "
        "x baseline: seed-updates/s over the public-code-style RADAC's "
        "updates/s at the same TF32 setting.\n\n",
        rate_table(rates),
        ""
        if budget.project
        else "\n--quick: a block of one update; these rates check the code "
        "path, they are no measurement.\n",
        "\n## The paper profile, projected\n\n",
        f"{', '.join(measured)} x {PAPER_DATASETS} datasets x {STACK} seeds x {PAPER_STEPS:,} "
        f"updates at their rates above (as training runs them: uncompiled, TF32 off; every "
        "dataset at "
        f"HalfCheetah-ME's config): **{flat:,.1f} {unit}** with one seed per process, "
        f"**{stacked:,.1f} {unit}** as {STACK}-seed stacks (one at a time).",
    ]
    if model_based:
        text.append(
            f" Not included: {', '.join(model_based)} (model-based: a dynamics model per "
            "dataset, and rollouts that a seed stack does not run)."
        )
    if not budget.project:
        text.append(" (--quick: the suite's other methods are not measured.)")
    goal = [
        r for r in rates if (r.algo, r.seeds, r.tf32, r.compiled) == ("radac", STACK, False, False)
    ]
    anchor = [r.updates_per_s for r in rates if r.case == "baseline" and not r.tf32]
    if goal and anchor and anchor[0] > 0:
        text.append(
            f"\n\nGoals (issue 24): RADAC **{goal[0].seed_updates_per_s:,.0f}** seed-updates/s "
            f"from one {STACK}-seed stack (goal >= {GOAL_SEED_UPDATES:,}); "
            f"**{goal[0].seed_updates_per_s / anchor[0]:.1f}x** the baseline (goal >= "
            f"{GOAL_RATIO:g}x); **{stacked:,.1f}** {unit} (goal <= {GOAL_HOURS:g} GPU-hours)."
        )
    return "".join(text) + "\n"


SECTIONS = ("parity", "bandit", "throughput")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--quick", action="store_true", help="tiny budgets, RADAC only, no compilation (tests)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results" / "gpu_check.md", help="the report"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=240.0,
        help="seconds: compiled cases start only while the check is within them (default 240)",
    )
    parser.add_argument(
        "--algos",
        nargs="+",
        default=None,
        help=f"throughput methods ({' '.join(THROUGHPUT_ALGOS)})",
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure compiled updates too (default: yes, but not with --quick)",
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    budget = QUICK if args.quick else Budget()
    if args.compile is not None:
        budget = dataclasses.replace(budget, compile=args.compile)
    algos = tuple(args.algos or (("radac",) if args.quick else THROUGHPUT_ALGOS))
    keep_freed_memory()
    started = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    parts, ok = [header(device)], True
    if "parity" in args.only:
        text, ok = parity_section(device, budget)
        parts.append(text)
    if "bandit" in args.only:
        parts.append("## The bandit's smoke panel on the device\n\n")
        parts.append(bandit_panel(device, args.out, budget) + "\n")
    if "throughput" in args.only:
        parts.append(throughput_section(device, budget, algos, started + args.budget))
    parts.append(f"\nThe whole check took {time.perf_counter() - started:.0f} s.\n")
    args.out.write_text("".join(parts))
    print(f"report: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
