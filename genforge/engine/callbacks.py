"""Callbacks the engine runs after steps: sample grids and FID/KID curves.

They draw their own random numbers from private generators, so enabling them does not change
the training trajectory."""

from pathlib import Path

from genforge.data.grid import save_grid, to_grid


class Callback:
    def on_start(self, step: int, task, logger) -> None: ...
    def on_step(self, step: int, task, logger) -> None: ...
    def on_end(self, step: int, task, logger) -> None: ...


class Announce(Callback):
    """Prints lines (and records them in the run's event log) when training starts: what a run
    found in its data, for instance."""

    def __init__(self, *lines: str):
        self.lines = lines

    def on_start(self, step, task, logger):
        for line in self.lines:
            logger.message(line)


class Periodic(Callback):
    """Calls `run` every `every` steps (0: only at the end), at the end, and at step 0 of a fresh
    run when `at_start`; at most once per step, and only where the logger writes (rank 0)."""

    def __init__(self, every: int, at_start: bool):
        self.every, self.at_start, self.last_step = every, at_start, -1

    def run(self, step: int, task, logger) -> None:
        raise NotImplementedError

    def _maybe(self, step, task, logger):
        if logger.enabled and step != self.last_step:
            self.run(step, task, logger)
            self.last_step = step

    def on_start(self, step, task, logger):
        if self.at_start and step == 0:
            self._maybe(step, task, logger)

    def on_step(self, step, task, logger):
        if self.every and step % self.every == 0:
            self._maybe(step, task, logger)

    def on_end(self, step, task, logger):
        self._maybe(step, task, logger)


class SampleGrid(Periodic):
    def __init__(self, every: int, run_dir: Path | None, n: int = 64):
        super().__init__(every, at_start=False)
        self.run_dir, self.n = run_dir, n

    def run(self, step, task, logger):
        images = task.sample_images(self.n)
        if images is not None:
            logger.image(step, "samples", to_grid(images))
            save_grid(images, Path(self.run_dir) / "samples" / f"step_{step:08d}.png")


class GenerationMetrics(Periodic):
    """FID/KID of task.generate() (the exported generator) against the real training images, every
    `every` steps, at the start of a fresh run (the baseline) and at the end."""

    def __init__(self, evaluator, every: int, n: int, seed: int = 0):
        super().__init__(every, at_start=True)
        self.evaluator, self.n, self.seed = evaluator, n, seed

    def run(self, step, task, logger):
        scores = self.evaluator(task.generate(self.n, seed=self.seed))
        logger.scalars(step, scores, kind="eval")
        logger.message(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))


class Validation(Periodic):
    """task.validation_step over fixed held-out batches every `every` steps, at the start of a
    fresh run and at the end."""

    def __init__(self, batches: list[dict], every: int):
        super().__init__(every, at_start=True)
        self.batches = batches

    def run(self, step, task, logger):
        rows = [task.validation_step(b) for b in self.batches]
        if rows and rows[0]:
            means = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
            logger.scalars(step, means, kind="val")
            logger.message(f"step {step}: " + ", ".join(f"val {k} {v:.4g}" for k, v in means.items()))


class Previews(Periodic):
    """Rows of task.preview(batch) (input | output | target) for fixed held-out batches, to
    TensorBoard and samples/, every `every` steps and at the end."""

    def __init__(self, batches: list[dict], every: int, run_dir: Path):
        super().__init__(every, at_start=False)
        self.batches, self.run_dir = batches, run_dir

    def run(self, step, task, logger):
        import torch
        rows = [task.preview(b) for b in self.batches]
        if rows:
            images = torch.cat(rows)
            per_row = len(rows[0])
            logger.image(step, "previews", to_grid(images, nrow=per_row))
            save_grid(images, Path(self.run_dir) / "samples" / f"step_{step:08d}.png", nrow=per_row)
