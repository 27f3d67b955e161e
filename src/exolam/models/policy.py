"""Downstream policies of App. D: what latent actions are worth for control.

After a LAM is trained (models/lapo.py, continuous z, d_z = 8) and frozen, App. D trains, all with MSE
(`objectives.sq_err`: summed over output dims, averaged over the batch or its labelled rows):

    pi(z|o):        L_pi   = E_(o,o') || pi(o) - sg psi_IDM(o, o') ||^2          every frame (no labels)
    pi_Dec(a|z):    L_Dec  = E_(o,o',a) labelled || pi_Dec(sg psi_IDM(o, o')) - a ||^2
    pi_BC(a|o):     L_BC   = E_(o,a) labelled || pi_BC(o) - a ||^2               the upper bound

and acts with a = clip(pi_Dec(pi(o)), -1, 1) (latent action policy) or a = clip(pi_BC(o), -1, 1).

Architectures. App. D: pi(z|o) has "convolution layers and a linear head with ReLU6 activation";
pi_Dec is "a 3-layer MLP"; pi_BC is pi with an action-sized output. We read the head as an MLP
head whose hidden layer is ReLU6 and whose last layer is linear: z is an unbounded IDM output (any
sign) and a lies in [-1, 1], so a ReLU6 on the output itself ([0, 6]) could not reach either target.
The conv trunk uses ReLU6 too (LAPO's policies are ReLU networks):

    h = ReLU6(conv3x3_s2(... ReLU6(conv3x3_s2(2 o - 1))))         widths cfg.channels, o in [0, 1]
    pi(o) = W_2 ReLU6(W_1 flatten(h) + b_1) + b_2                  hidden = cfg.hidden, out = cfg.out_dim
    pi_Dec(z) = W_3 ReLU(W_2 ReLU(W_1 z + b_1) + b_2) + b_3

The frozen LAM is held by the objectives outside the module tree (not a submodule), so the engine
(train/engine.py) neither optimizes, DDP-syncs nor checkpoints it; it runs in eval mode under
no_grad and follows the batch to its device.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
from torch import nn

from exolam.data.transitions import Transitions
from exolam.errors import ConfigError, check_positive_int
from exolam.models.lapo import DownConv, halve
from exolam.objectives import Term, sq_err
from exolam.runs.files import LATE


@dataclasses.dataclass
class PolicyConfig:
    """pi(z|o) (out_dim = d_z) or pi_BC(a|o) (out_dim = d_a) of App. D; defaults fit 64x64x3 frames."""

    in_channels: int = 3  # image channels (3: RGB)
    image_size: int = 64  # observation height = width (pixels)
    channels: tuple[int, ...] = (32, 64, 128, 128)  # stride-2 3x3 conv widths
    hidden: int = 256  # ReLU6 hidden width of the head
    out_dim: int = 8  # d_z (latent policy) or d_a (BC)

    def validate(self) -> "PolicyConfig":
        for name in ("in_channels", "image_size", "hidden", "out_dim"):
            check_positive_int(f"policy.{name}", getattr(self, name))
        if not isinstance(self.channels, (tuple, list)) or not self.channels:
            raise ConfigError(f"policy.channels = {self.channels!r} must list at least 1 conv width(s)")
        for i, c in enumerate(self.channels):
            check_positive_int(f"policy.channels[{i}]", c)
        return self


class ConvPolicy(nn.Module):
    """o (float [B, C, H, W] in [0, 1]) -> [B, out_dim]: ReLU6 conv trunk, ReLU6 hidden, linear output."""

    def __init__(self, cfg: PolicyConfig | None = None):
        super().__init__()
        self.cfg = (cfg or PolicyConfig()).validate()
        layers, c_in = [], self.cfg.in_channels
        for c in self.cfg.channels:
            layers += [DownConv(c_in, c), nn.ReLU6()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        flat = c_in * halve(self.cfg.image_size, len(self.cfg.channels)) ** 2
        self.hidden = nn.Sequential(nn.Linear(flat, self.cfg.hidden), nn.ReLU6())
        self.out = nn.Linear(self.cfg.hidden, self.cfg.out_dim)

    def features(self, o: torch.Tensor) -> torch.Tensor:
        """The head's ReLU6 hidden layer, in [0, 6]^hidden."""
        return self.hidden(self.conv(2 * o - 1).flatten(1))

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(o))


@dataclasses.dataclass
class DecoderConfig:
    """pi_Dec(a|z) of App. D: a 3-layer MLP from d_z to d_a."""

    d_z: int = 8
    """latent action dim (the LAM's)"""
    d_a: int = 6  # cheetah
    hidden: int = 256
    """MLP width"""
    standardize: bool = dataclasses.field(default=False, metadata={LATE: True})
    """feed the MLP (z - mean) / std, mean and std fixed buffers set from the training data
    (`ActionDecoder.standardize_by`); `bc-state` uses it: cheetah's raw state mixes positions (~1) with
    velocities (up to ~20), and the MLP on it learns far less at the same budget (docs/results.md, App. D)"""

    def validate(self) -> "DecoderConfig":
        for name in ("d_z", "d_a", "hidden"):
            check_positive_int(f"decoder.{name}", getattr(self, name))
        return self


class ActionDecoder(nn.Module):
    """pi_Dec: z [B, d_z] -> a [B, d_a], Linear-ReLU-Linear-ReLU-Linear."""

    def __init__(self, cfg: DecoderConfig | None = None):
        super().__init__()
        self.cfg = (cfg or DecoderConfig()).validate()
        h = self.cfg.hidden
        self.net = nn.Sequential(nn.Linear(self.cfg.d_z, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                 nn.Linear(h, self.cfg.d_a))
        if self.cfg.standardize:  # in the state dict, so a checkpoint keeps them
            self.register_buffer("mean", torch.zeros(self.cfg.d_z))
            self.register_buffer("std", torch.ones(self.cfg.d_z))

    def standardize_by(self, z: torch.Tensor) -> "ActionDecoder":
        """Set mean, std to those of the rows of `z` [N, d_z] (a constant dimension's std floored at 1e-6)."""
        if not self.cfg.standardize:
            raise ConfigError("ActionDecoder.standardize_by: the decoder was built with standardize=False")
        z = torch.as_tensor(z, dtype=torch.float64)
        self.mean.copy_(z.mean(0))
        self.std.copy_(z.std(0, unbiased=False).clamp_min(1e-6))
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net((z - self.mean) / self.std if self.cfg.standardize else z)


# ---------------------------------------------------------------- objectives for engine.fit


class _PolicyObjective(nn.Module):
    """What engine.fit/save read from an objective: `terms` (recorded as e.g. "policy:1") and
    `target_dims`; no parameters of its own (its checkpointed state dict is empty). `labeller`: the frozen
    LAM that labels z (LatentPolicyObjective(model), DecoderObjective(model)), None for BC."""

    name = ""

    def __init__(self, labeller: nn.Module | None):
        super().__init__()
        self.terms = (Term(self.name, 1.0),)
        self.target_dims: dict[str, int] = {}
        self._labeller = (labeller,)  # a tuple: nn.Module does not register it, so the LAM stays outside the tree
        if labeller is not None:
            labeller.eval()

    @property
    def labeller(self) -> nn.Module | None:
        return self._labeller[0]

    @torch.no_grad()
    def latent(self, batch: Transitions) -> torch.Tensor:
        """sg z = psi_IDM(o, o') of the frozen LAM (eval mode, moved to the batch's device), fp32."""
        labeller = self.labeller
        p = next(labeller.parameters(), None)
        if p is not None and p.device != batch.o.device:
            labeller.to(batch.o.device)
        labeller.eval()
        return labeller.encode(batch.o, batch.o_next).float()

    @staticmethod
    def _actions(batch: Transitions) -> torch.Tensor:
        if batch.a is None:
            raise ConfigError("the decoder / BC objectives need action labels `a` in the data")
        return batch.a.float().flatten(1)


class LatentPolicyObjective(_PolicyObjective):
    """L_pi = sq_err(pi(o), sg psi_IDM(o, o')) on every frame (App. D); parts {"policy"}."""

    name = "policy"

    def forward(self, model: nn.Module, batch: Transitions) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = sq_err(model(batch.o), self.latent(batch))
        return loss, {self.name: loss}


class DecoderObjective(_PolicyObjective):
    """L_Dec = sq_err(pi_Dec(sg psi_IDM(o, o')), a, label_mask) on the labelled rows; parts {"decoder"}."""

    name = "decoder"

    def forward(self, model: nn.Module, batch: Transitions) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = sq_err(model(self.latent(batch)), self._actions(batch), batch.label_mask)
        return loss, {self.name: loss}


class BCObjective(_PolicyObjective):
    """L_BC = sq_err(pi_BC(o), a, label_mask) on the labelled rows; parts {"bc"}."""

    name = "bc"

    def __init__(self):
        super().__init__(None)

    def forward(self, model: nn.Module, batch: Transitions) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = sq_err(model(batch.o), self._actions(batch), batch.label_mask)
        return loss, {self.name: loss}


# ---------------------------------------------------------------- acting


def _act(fn: Callable[[torch.Tensor], torch.Tensor], modules: tuple[nn.Module, ...]):
    device = next(modules[0].parameters()).device

    @torch.no_grad()
    def act(images: torch.Tensor) -> np.ndarray:
        for m in modules:
            m.eval()
        a = fn(torch.as_tensor(images, dtype=torch.float32, device=device))
        return a.clamp(-1.0, 1.0).float().cpu().numpy().astype(np.float32)

    return act


def latent_action_policy(policy: nn.Module, decoder: nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    """images [B, C, H, W] in [0, 1] -> a = clip(pi_Dec(pi(o)), -1, 1), float32 numpy [B, d_a] (App. D)."""
    return _act(lambda o: decoder(policy(o)), (policy, decoder))


def bc_policy(model: nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    """images [B, C, H, W] in [0, 1] -> a = clip(pi_BC(o), -1, 1), float32 numpy [B, d_a] (App. D)."""
    return _act(model, (model,))
