from genforge.losses.adversarial import (
                                         clip_weights,
                                         d_loss,
                                         feature_matching,
                                         g_loss,
                                         gradient_penalty,
                                         multiscale_d_loss,
                                         multiscale_feature_matching,
                                         multiscale_g_loss,
)
from genforge.losses.kl import gaussian_kl
from genforge.losses.pixel import census, charbonnier, reconstruction

__all__ = ["d_loss", "g_loss", "gradient_penalty", "clip_weights",
           "gaussian_kl", "charbonnier", "census", "reconstruction", "feature_matching", "multiscale_d_loss",
           "multiscale_g_loss", "multiscale_feature_matching"]
