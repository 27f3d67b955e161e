"""The practical VQ latent action model of Sec. 5 (Fig. 5a) with the sizes of App. C, Table 2.

    z_e = MLP(flatten(CNN([o, o'])))                 psi_IDM before the bottleneck, z_e in R^{d_z}
    k   = argmin_j ||z_e - e_j||,  z = e_k          vector quantization, codebook {e_j}_{j<K}
    o'_hat = UNet(o | z)                             psi_FDM

Bottleneck (VQ-VAE, van den Oord et al. 2017): the FDM sees z = z_e + sg(e_k - z_e) (straight-through
estimator, so reconstruction gradients reach the IDM), the loss adds beta * ||z_e - sg(e_k)||^2
(commitment, beta = 0.25, mean over dims), and the codebook follows an exponential moving average of
the encoder outputs assigned to each code (no codebook gradient; `codebook_update="ema"`, decay
`ema_decay`). The paper names only beta, so the codebook update is a free choice; `codebook_update="loss"`
learns the codebook by gradient instead, with the VQ-VAE codebook term (Eq. 3 of van den Oord et al.):

    L_VQ = ||sg(z_e) - e_k||^2 + beta * ||z_e - sg(e_k)||^2

This is
`vector_quantize_pytorch.VectorQuantize` with `rotation_trick=False` (its default for dim > 1 is the
rotation trick; we keep the plain STE of a VQ-VAE, which the paper describes).

Checked with vector-quantize-pytorch 1.32 / torch 2.13 CPU: it runs in fp32, under
`torch.autocast('cpu', dtype=torch.bfloat16)` (distances are computed in fp32 inside; z comes back in
bf16 like the surrounding activations; the loss is fp32) and with channels_last convs (the VQ only
sees [B, d_z] vectors), so no own VQ module is needed. It does not run under torch.func.vmap
(so the grid-world sweeps train several of these in processes, not as ensembles).

Two choices the library leaves open, made here so metrics never change the model:
- the EMA codebook update runs only when the module is training *and* autograd is on, so calling
  the IDM under torch.no_grad (metrics, evaluation) never moves the codebook;
- in eval mode the library returns a zero loss; we report the same beta * commitment value there so
  that logged validation losses are comparable with training ones.

FDM: a two-level UNet with conv channels [32, 32, 32, 32] (Table 2). z enters twice: broadcast as
d_z extra input channels next to o, and as FiLM (scale, shift) at the 2x2 bottleneck, so the
decoder can use z at every resolution.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from exolam.errors import ConfigError, check_positive_int, check_range
from exolam.models.base import LAM, IDMOutput
from exolam.runs.files import LATE


@dataclasses.dataclass
class VQLAMConfig:
    """Architecture of the practical LAM (App. C, Table 2); defaults are the paper's."""

    in_channels: int = 1  # image channels (1: the grid world)
    image_size: int = 4  # observation height = width
    idm_channels: tuple[int, ...] = (128, 128, 128)  # psi_IDM conv channels
    idm_hidden: int = 64  # psi_IDM MLP hidden dim
    d_z: int = 32  # latent action dim
    codebook_size: int = 5  # K: codes in the codebook
    commitment: float = 0.25  # beta
    fdm_channels: tuple[int, int, int, int] = (32, 32, 32, 32)  # psi_FDM UNet conv channels
    ema_decay: float = 0.8  # codebook EMA decay (vector-quantize-pytorch default; not in the paper)
    codebook_update: str = dataclasses.field(default="ema", metadata={LATE: True})
    """ema: e_j follow an EMA of their z_e (decay ema_decay); loss: learnt by the VQ-VAE codebook loss"""

    def validate(self) -> "VQLAMConfig":
        for name in ("in_channels", "image_size", "idm_hidden", "d_z", "codebook_size"):
            check_positive_int(f"model.{name}", getattr(self, name))
        if self.image_size % 2:
            raise ConfigError(f"model.image_size = {self.image_size} must be even (the UNet halves it once)")
        if len(self.idm_channels) < 1:
            raise ConfigError("model.idm_channels must list at least one conv width")
        for i, c in enumerate(self.idm_channels):
            check_positive_int(f"model.idm_channels[{i}]", c)
        if len(self.fdm_channels) != 4:
            raise ConfigError(f"model.fdm_channels = {tuple(self.fdm_channels)} must list exactly 4 conv widths")
        for i, c in enumerate(self.fdm_channels):
            check_positive_int(f"model.fdm_channels[{i}]", c)
        check_range("model.commitment", self.commitment, 0.0, None)
        check_range("model.ema_decay", self.ema_decay, 0.0, 1.0, hi_open=True)
        if self.codebook_update not in ("ema", "loss"):
            raise ConfigError(f"model.codebook_update = {self.codebook_update!r} must be 'ema' or 'loss'")
        if self.codebook_update == "loss" and self.ema_decay != VQLAMConfig.ema_decay:
            raise ConfigError(f"model.ema_decay = {self.ema_decay} has no effect with model.codebook_update = "
                              "'loss' (no EMA); leave it at its default")
        return self


class IDM(nn.Module):
    """psi_IDM up to the bottleneck: conv3x3 (pad 1) + ReLU stack on [o, o'], flatten, MLP -> z_e."""

    def __init__(self, cfg: VQLAMConfig):
        super().__init__()
        layers, c_in = [], 2 * cfg.in_channels
        for c in cfg.idm_channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.mlp = nn.Sequential(
            nn.Linear(c_in * cfg.image_size * cfg.image_size, cfg.idm_hidden),
            nn.ReLU(),
            nn.Linear(cfg.idm_hidden, cfg.d_z),
        )

    def forward(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        h = self.conv(torch.cat([o, o_next], dim=1))
        return self.mlp(h.flatten(1))


class UNetFDM(nn.Module):
    """psi_FDM: UNet on o conditioned on z; S -> S/2 -> S (S = image_size) with one skip connection.

        e1 = conv(o ++ z)                 c0 @ S         (z broadcast as d_z channels)
        e2 = conv_stride2(e1)             c1 @ S/2
        b  = conv(FiLM_z(e2))             c2 @ S/2       (FiLM: e2 * (1 + gamma(z)) + beta(z))
        d  = conv(up(b) ++ e1)            c3 @ S         (skip)
        o'_hat = conv1x1(d)
    """

    def __init__(self, cfg: VQLAMConfig):
        super().__init__()
        c0, c1, c2, c3 = cfg.fdm_channels
        self.enc1 = nn.Conv2d(cfg.in_channels + cfg.d_z, c0, 3, padding=1)
        self.enc2 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.film = nn.Linear(cfg.d_z, 2 * c1)
        self.mid = nn.Conv2d(c1, c2, 3, padding=1)
        self.dec = nn.Conv2d(c2 + c0, c3, 3, padding=1)
        self.out = nn.Conv2d(c3, cfg.in_channels, 1)

    def forward(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z_map = z[:, :, None, None].expand(-1, -1, o.shape[-2], o.shape[-1]).to(o.dtype)
        e1 = F.relu(self.enc1(torch.cat([o, z_map], dim=1)))
        e2 = F.relu(self.enc2(e1))
        gamma, beta = self.film(z).chunk(2, dim=-1)
        e2 = e2 * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        b = F.relu(self.mid(e2))
        up = F.interpolate(b, size=e1.shape[-2:], mode="nearest")
        d = F.relu(self.dec(torch.cat([up, e1], dim=1)))
        return self.out(d)


class VQLAM(LAM):
    """The practical VQ LAM (Sec. 5, App. C Table 2) with the LAM protocol of models/base.py."""

    def __init__(self, cfg: VQLAMConfig | None = None):
        super().__init__()
        self.cfg = (cfg or VQLAMConfig()).validate()
        self.idm_net = IDM(self.cfg)
        self.vq = VectorQuantize(
            dim=self.cfg.d_z,
            codebook_size=self.cfg.codebook_size,
            commitment_weight=self.cfg.commitment,
            decay=self.cfg.ema_decay,
            rotation_trick=False,  # plain straight-through estimator (VQ-VAE)
            ema_update=self.cfg.codebook_update == "ema",
            learnable_codebook=self.cfg.codebook_update == "loss",
        )
        self.fdm_net = UNetFDM(self.cfg)

    @property
    def d_z(self) -> int:
        return self.cfg.d_z

    @property
    def codebook(self) -> torch.Tensor:
        """The K code vectors e_j, [K, d_z]."""
        return self.vq.codebook

    def idm(self, o: torch.Tensor, o_next: torch.Tensor) -> IDMOutput:
        """psi_IDM(o, o') with vector quantization: (z = e_k via STE, z_e, k, beta * commitment)."""
        z_pre = self.idm_net(o, o_next)
        frozen = not (self.training and torch.is_grad_enabled())
        z, codes, loss = self.vq(z_pre, freeze_codebook=frozen)
        if self.cfg.codebook_update == "loss" and not frozen:
            # the library's term is beta * ||z_e - e_k||^2 into both; top the codebook's share up to weight 1
            e_k = self.vq.codebook[codes]
            loss = loss + (1.0 - self.cfg.commitment) * F.mse_loss(e_k.float(), z_pre.detach().float())
        if not self.training:
            loss = self.cfg.commitment * F.mse_loss(z_pre.float(), z.detach().float())
        return IDMOutput(z=z, z_pre=z_pre, codes=codes, loss=loss)

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """psi_FDM(o, z) -> o'_hat, same shape as o."""
        return self.fdm_net(o, z)
