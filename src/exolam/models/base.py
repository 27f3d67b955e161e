"""The LAM protocol shared by every latent action model (Sec. 3, Eq. 5; docs/design.md "Models").

A LAM is an inverse dynamics model psi_IDM and a forward dynamics model psi_FDM:

    z = psi_IDM(o, o')            latent action inferred from a transition
    o'_hat = psi_FDM(o, z)        next observation predicted from o and the latent action

trained with L_LAM = E ||o' - psi_FDM(o, psi_IDM(o, o'))||^2 (Eq. 5) plus an optional bottleneck
loss. Every LAM in exolam (LinearLAM Eq. 8-9, VQLAM App. C, LapoLAM App. D) exposes:

- `idm(o, o_next) -> IDMOutput`  the full IDM result (below)
- `fdm(o, z) -> o_next_hat`      same shape as o
- `encode(o, o_next) -> z`       = idm(o, o_next).z
- `decode(o, z) -> o_next_hat`   = fdm(o, z)

Objectives and metrics only call these four, so they work on any model that has them; the
xi'-swap test (Sec. 4.2) needs only `encode`/`decode`. A model whose FDM predicts something other
than o' (LapoLAM with the EMA encoder of App. D predicts f_EMA(I')) also has
`fdm_target(o_next)`, which L_LAM and L_X-exo then compare against (objectives.py).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn


class IDMOutput(NamedTuple):
    """What psi_IDM returns.

    z:      latent action fed to the FDM, [B, d_z] (after the bottleneck, e.g. quantized)
    z_pre:  the latent before the bottleneck, [B, d_z] (z_e of a VQ-VAE; equals z without one)
    codes:  discrete code index per sample, int64 [B], or None for a continuous bottleneck
    loss:   scalar bottleneck loss to add to the objective (e.g. beta * commitment); 0 if none
    """

    z: torch.Tensor
    z_pre: torch.Tensor
    codes: Optional[torch.Tensor]
    loss: torch.Tensor


class LAM(nn.Module):
    """Base of exolam's LAMs: a subclass defines `idm` and `fdm`; `encode`, `decode` and `forward`
    follow from them (forward = one call that a DDP-wrapped module needs)."""

    def idm(self, o: torch.Tensor, o_next: torch.Tensor) -> IDMOutput:
        raise TypeError(f"{type(self).__name__} must define idm(o, o_next)")

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define fdm(o, z)")

    def encode(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        return self.idm(o, o_next).z

    def decode(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.fdm(o, z)

    def forward(self, o: torch.Tensor, o_next: torch.Tensor) -> tuple[torch.Tensor, IDMOutput]:
        """(fdm prediction, IDM output) in one call."""
        out = self.idm(o, o_next)
        return self.fdm(o, out.z), out
