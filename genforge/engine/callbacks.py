"""Callbacks the engine runs after steps: sample grids and FID/KID curves.

They draw their own random numbers from private generators, so enabling them does not change
the training trajectory."""

from pathlib import Path

from genforge.data.grid import save_grid, to_grid
from genforge.models.sampling import generate


class Callback:
    def on_start(self, step: int, task, logger) -> None: ...
    def on_step(self, step: int, task, logger) -> None: ...
    def on_end(self, step: int, task, logger) -> None: ...


class SampleGrid(Callback):
    def __init__(self, every: int, run_dir: Path | None, n: int = 64):
        self.every, self.run_dir, self.n = every, run_dir, n

    def _write(self, step, task, logger):
        images = task.sample_images(self.n)
        if images is None or not logger.enabled:
            return
        logger.image(step, "samples", to_grid(images))
        save_grid(images, Path(self.run_dir) / "samples" / f"step_{step:08d}.png")

    def on_step(self, step, task, logger):
        if step % self.every == 0:
            self._write(step, task, logger)

    def on_end(self, step, task, logger):
        if step % self.every:
            self._write(step, task, logger)


class GenerationMetrics(Callback):
    """FID/KID of the exported generator against the real training images, every `every` steps,
    at the start of a fresh run (the baseline) and at the end."""

    def __init__(self, evaluator, every: int, n: int, seed: int = 0):
        self.evaluator, self.every, self.n, self.seed = evaluator, every, n, seed
        self.last_step = -1

    def _run(self, step, task, logger):
        if not logger.enabled or step == self.last_step:
            return
        fake = generate(task.export_module(), self.n, seed=self.seed)
        scores = self.evaluator(fake)
        logger.scalars(step, scores, kind="eval")
        logger.message(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
        self.last_step = step

    def on_start(self, step, task, logger):
        if step == 0:
            self._run(step, task, logger)

    def on_step(self, step, task, logger):
        if self.every and step % self.every == 0:
            self._run(step, task, logger)

    def on_end(self, step, task, logger):
        self._run(step, task, logger)


class Validation(Callback):
    """task.validation_step over fixed held-out batches every `every` steps and at the end."""

    def __init__(self, batches: list[dict], every: int):
        self.batches, self.every = batches, every
        self.last_step = -1

    def _run(self, step, task, logger):
        if not logger.enabled or step == self.last_step or not self.batches:
            return
        rows = [task.validation_step(b) for b in self.batches]
        means = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows and rows[0] else {}
        if means:
            logger.scalars(step, means, kind="val")
            logger.message(f"step {step}: " + ", ".join(f"val {k} {v:.4g}" for k, v in means.items()))
        self.last_step = step

    def on_start(self, step, task, logger):
        self._run(step, task, logger)

    def on_step(self, step, task, logger):
        if step % self.every == 0:
            self._run(step, task, logger)

    def on_end(self, step, task, logger):
        self._run(step, task, logger)
