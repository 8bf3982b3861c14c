"""train.max_minutes: a wall-clock budget for a whole run, resumes included.

The time a run has trained is kept in every checkpoint (`elapsed_s`), so a resumed run continues
the same budget instead of starting a new one. Training ends at whichever of train.steps and the
budget comes first; schedules that decay (tasks/base.py make_scheduler) follow whichever of the
two is further along, so a run cut short by time still ends its decay at a learning rate of ~0.
With several processes the ranks agree on the time (the slowest rank's) every log_every steps,
so that they decay and stop together.
"""

import time

from genforge.engine import distributed


class WallClock:
    def __init__(self, max_minutes: float | None, elapsed_s: float = 0.0):
        self.budget_s = None if not max_minutes else float(max_minutes) * 60.0
        self.before = float(elapsed_s)
        self.start = time.monotonic()
        self.synced = self.before  # the elapsed time every rank agrees on

    def elapsed(self) -> float:
        """Seconds trained so far, earlier sessions of a resumed run included (this rank's clock)."""
        return self.before + time.monotonic() - self.start

    def update(self, step: int, every: int, dist) -> None:
        """Read the clock: every step in one process, every `every` steps across ranks (a collective)."""
        if self.budget_s is None:
            return
        if not dist.enabled:
            self.synced = self.elapsed()
        elif step % every == 0:
            self.synced = distributed.max_value(self.elapsed(), dist.device)

    def fraction(self) -> float:
        """The share of the budget used, in [0, 1] (what the schedules follow)."""
        return 0.0 if self.budget_s is None else min(1.0, self.synced / self.budget_s)

    def out_of_time(self) -> bool:
        return self.budget_s is not None and self.synced >= self.budget_s

    def follow(self, schedulers) -> None:
        """Make decaying schedules follow the budget too (those built by make_scheduler)."""
        if self.budget_s is None:
            return
        for sched in schedulers:
            follow = getattr(sched, "follow_clock", None)
            if follow is not None:
                follow(self.fraction)


def end_message(ended_by: str, step: int, steps: int, clock: WallClock) -> str:
    minutes = clock.elapsed() / 60
    if ended_by == "max_minutes":
        return (f"training ended by train.max_minutes ({clock.budget_s / 60:g} min) at step {step} of "
                f"{steps}, after {minutes:.1f} min")
    return f"training ended by train.steps ({steps}) after {minutes:.1f} min"
