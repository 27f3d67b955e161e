"""Metrics of the paper (docs/design.md metrics table).

`latent.py`: metrics on latent actions z (probe NMSE, leakage / consistency variance, exogenous
energy); `pixel.py`: metrics that need a pixel LAM's encode/decode (consistency loss, exogenous-
region MSE, xi'-swap PSNR, codebook usage, probe accuracy).
"""

from exolam.metrics.latent import (consistency_var, exo_energy, fit_linear_probe, innovation_encoder, leakage_var,
                                   probe_nmse, probe_nmse_given_o, weighted_variance_ratio)
from exolam.metrics.pixel import (codebook_usage, consistency_loss, exo_region_mse, probe_accuracy, psnr,
                                  region_mse, swap_psnr)

__all__ = ["probe_nmse", "probe_nmse_given_o", "fit_linear_probe", "innovation_encoder", "leakage_var", "consistency_var", "exo_energy", "weighted_variance_ratio",
           "consistency_loss", "region_mse", "exo_region_mse", "swap_psnr", "psnr", "codebook_usage",
           "probe_accuracy"]
from exolam.metrics.encoder import derangement, xi_sensitivity, z_consistency  # noqa: E402  (App. D, Eq. 13)

__all__ += ["xi_sensitivity", "z_consistency", "derangement"]
