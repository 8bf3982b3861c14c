from genforge.losses.adversarial import (ADVERSARIAL_LOSSES, d_loss, g_loss, gradient_penalty,
                                         clip_weights)
from genforge.losses.kl import gaussian_kl
from genforge.losses.pixel import charbonnier, reconstruction

__all__ = ["ADVERSARIAL_LOSSES", "d_loss", "g_loss", "gradient_penalty", "clip_weights",
           "gaussian_kl", "charbonnier", "reconstruction"]
