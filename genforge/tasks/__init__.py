"""Task families by config `task.kind`, registered explicitly."""

from genforge.tasks.base import Task
from genforge.tasks.gan import GANTask
from genforge.tasks.superres import SuperResTask
from genforge.tasks.translation import CycleGANTask, Pix2PixTask, SPADETask
from genforge.tasks.vae import VAETask

TASKS = {"gan": GANTask, "vae": VAETask, "superres": SuperResTask, "pix2pix": Pix2PixTask,
         "cyclegan": CycleGANTask, "spade": SPADETask}


def build_task(cfg, device) -> Task:
    return TASKS[cfg.task.kind](cfg, device)


__all__ = ["Task", "GANTask", "VAETask", "SuperResTask", "Pix2PixTask", "CycleGANTask", "SPADETask", "TASKS",
           "build_task"]
