"""Progress from inside long loops (training updates, dataset rollouts), for whoever listens.

A loop makes a :func:`tracker` and calls it with its step; at most once a second (and at
its last step) the tracker sends a :class:`Message` to the installed reporter. No reporter
is installed by default, so a loop costs a no-op call per step. The pipeline's executor
(``pipeline/executors.py``) installs one around its jobs when stderr is a terminal: in pool
workers it puts the messages on a queue the main process reads, inline it hands them to
:class:`PlanBar` directly, which shows the plan's bar (updates done, the plan's rate and
ETA) with each running job's step, updates per second and ETA.

Without a reporter, a loop asked for a ``bar`` (dataset generation) shows its own tqdm bar,
on a terminal only: logs that are files stay short.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from tqdm import tqdm

INTERVAL = 1.0  # seconds between two messages of one loop
UPDATE = "update"  # the unit of training loops: what the plan's bar counts
MAX_SHOWN = 4  # running jobs listed after the plan's bar


class Message(NamedTuple):
    """One loop's position: ``step`` of ``total`` ``unit``s of ``task``, in job ``job``."""

    job: str  # the job's label (set by the executor), else the task itself
    task: str  # what the loop does: "radac seed 0", "generate hopper-medium-expert"
    unit: str  # "update" (training) or "row" (dataset generation)
    step: int
    total: int


Reporter = Callable[[Message], None]

_reporter: Reporter | None = None
_job: str | None = None


def on_terminal() -> bool:
    """Whether stderr is a terminal (progress is shown only there)."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def set_reporter(reporter: Reporter | None) -> Reporter | None:
    """Install ``reporter`` for every loop of this process; returns the previous one."""
    global _reporter
    previous, _reporter = _reporter, reporter
    return previous


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """``reporter`` installed for the duration of the block."""
    previous = set_reporter(reporter)
    try:
        yield
    finally:
        set_reporter(previous)


@contextlib.contextmanager
def job(label: str) -> Iterator[None]:
    """Messages sent in the block name ``label`` as their job."""
    global _job
    previous, _job = _job, label
    try:
        yield
    finally:
        _job = previous


class Tracker:
    """``tracker(step)`` after each step; sends at most once per :data:`INTERVAL`."""

    def __init__(self, task: str, total: int, unit: str, initial: int, bar: bool):
        self.task, self.total, self.unit = task, total, unit
        self._next = 0.0  # when the next message is due
        self._sent = initial  # a loop with nothing to do says nothing
        self._bar = None
        self._shown = initial
        if bar and _reporter is None:
            self._bar = tqdm(
                total=total, initial=initial, desc=task, unit=unit, mininterval=INTERVAL
            )
        elif _reporter is not None and initial < total:
            self._send(initial)  # where the loop starts (a resumed run: its checkpoint)

    def __call__(self, step: int) -> None:
        if step < self.total and time.monotonic() < self._next:
            return
        self._send(step)

    def _send(self, step: int) -> None:
        self._next = time.monotonic() + INTERVAL
        self._sent = step
        if self._bar is not None:
            self._bar.update(step - self._shown)
            self._shown = step
        elif _reporter is not None:
            _reporter(Message(_job or self.task, self.task, self.unit, step, self.total))

    def close(self, step: int | None = None) -> None:
        """Send ``step`` (the loop's last) unless it was sent; close the bar."""
        if step is not None and step != self._sent:
            self._send(step)
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Silent:
    def __call__(self, step: int) -> None:
        pass

    def close(self, step: int | None = None) -> None:
        pass


def tracker(
    task: str, total: int, unit: str = UPDATE, initial: int = 0, bar: bool = False
) -> Tracker | _Silent:
    """A tracker for a loop of ``total`` steps starting at ``initial``.

    It reports to the installed reporter; with none, ``bar=True`` shows a tqdm bar on a
    terminal, and otherwise it does nothing (the default: a loop costs one call per step).
    """
    if _reporter is None and not (bar and on_terminal()):
        return _Silent()
    return Tracker(task, total, unit, initial, bar)


# ----------------------------------------------------------------------------- the listener


class _Running:
    """What the plan's bar knows about one running loop."""

    def __init__(self, message: Message, now: float):
        self.message = message
        self.last_step = message.step
        self.last_time = now
        self.rate: float | None = None  # steps per second, smoothed

    def update(self, message: Message, now: float) -> int:
        """Take ``message``; returns the steps done since the previous one."""
        delta = message.step - self.last_step
        elapsed = now - self.last_time
        if delta > 0 and elapsed > 0:
            rate = delta / elapsed
            self.rate = rate if self.rate is None else 0.7 * self.rate + 0.3 * rate
        self.message, self.last_step, self.last_time = message, message.step, now
        return max(delta, 0)

    def describe(self) -> str:
        m = self.message
        if m.unit == UPDATE:
            text = f"{m.job} {m.step:,}/{m.total:,}"
        else:
            where = m.task if m.job == m.task else f"{m.job}: {m.task}"
            text = f"{where} {m.step:,}/{m.total:,} {m.unit}s"
        if self.rate:
            eta = tqdm.format_interval((m.total - m.step) / self.rate)
            text += f" {self.rate:,.0f}/s ETA {eta}"
        return text


class PlanBar:
    """The plan's bar, with the running jobs' step, updates per second and ETA after it.

    It is the reporter (call it with each :class:`Message`; thread-safe). It counts runs
    until a job trains, then training updates: ``expected[i]`` is job ``i``'s updates when
    known (its ``steps``), so the plan's total, rate and ETA count the jobs not started yet;
    a job that resumes at step k, or ends without training (a finished run, an
    evaluation-only pass), takes from the total what it did not need. A plan that trains
    nothing (evaluation only, Ray's tasks, which report nothing) keeps counting runs.
    Shown on a terminal only (``show``).
    """

    def __init__(
        self,
        desc: str,
        labels: Sequence[str],
        expected: Sequence[int | None],
        show: bool,
        file: Any = None,  # default: stderr
    ):
        self._labels = list(labels)
        self._index = {label: i for i, label in enumerate(labels)}
        self._expected = [e or 0 for e in expected]  # each job's part of the total
        self._counted = [0] * len(labels)  # updates each job reported
        self._seen = [False] * len(labels)
        self._running: dict[tuple[str, str], _Running] = {}
        self._finished = 0
        self._updates = False  # counting updates (else runs)
        self._lock = threading.Lock()
        self.bar = tqdm(
            total=len(labels),
            desc=desc,
            unit="run",
            disable=not show,
            mininterval=0.5,
            miniters=1,  # a refresh per message, at most every mininterval
            dynamic_ncols=True,
            file=file,
        )

    def __call__(self, message: Message) -> None:
        now = time.monotonic()
        with self._lock:
            key = (message.job, message.task)
            i = self._index.get(message.job)
            trains = i is not None and message.unit == UPDATE
            running = self._running.get(key)
            delta = 0
            if running is None:
                self._running[key] = _Running(message, now)
                if trains:
                    self._starts(i, message)
            else:
                delta = running.update(message, now)
            if message.step >= message.total:
                self._running.pop(key, None)
            self._show(refresh=False)
            if delta and trains:
                self._counted[i] += delta
                self.bar.update(delta)  # refreshes at most every mininterval
            else:
                self.bar.refresh()

    def _starts(self, i: int, message: Message) -> None:
        """Job ``i``'s training starts: its part of the total is from here to its end (a
        second loop in the job, as when a seed stack falls back to one seed at a time,
        adds its own)."""
        base = self._expected[i] if self._seen[i] else 0
        needed = base + message.total - message.step
        grow = needed - self._expected[i]
        self._expected[i], self._seen[i] = needed, True
        if self._updates:
            self._grow(grow)
            return
        self._updates = True  # from now on the bar counts updates
        self.bar.unit = UPDATE
        self.bar.reset(total=sum(self._expected))

    def finished(self, i: int) -> None:
        """Job ``i`` ended (finished or failed): its part of the total is what it did."""
        with self._lock:
            if self._updates:
                self._grow(self._counted[i] - self._expected[i])
            else:
                self.bar.update(1)
            self._expected[i] = self._counted[i]
            for key in [k for k in self._running if k[0] == self._labels[i]]:
                del self._running[key]
            self._finished += 1
            self._show()

    def _grow(self, by: int) -> None:
        if by:
            self.bar.total = max(self.bar.n, self.bar.total + by)

    def _show(self, refresh: bool = True) -> None:
        items = [f"runs {self._finished}/{len(self._labels)}"] if self._updates else []
        running = list(self._running.values())
        items += [r.describe() for r in running[:MAX_SHOWN]]
        if len(running) > MAX_SHOWN:
            items.append(f"+{len(running) - MAX_SHOWN} more")
        self.bar.set_postfix_str(" | ".join(items), refresh=refresh)

    def close(self) -> None:
        with self._lock:
            self.bar.close()
