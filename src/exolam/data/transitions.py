"""`Transitions`: the one batch type every generator yields and every objective/metric takes.

Leading dims are `[..., batch]` (an ensemble adds a model dim in front: `[M, B, ...]`).
Fields follow the paper's symbols (Sec. 3, Eq. 3-4, Def. 4.5):

- `o`, `o_next`: observations o = h(s, xi), o' = h(s', xi')
- `a`: the action (None for action-free video)
- `s`, `s_next`, `xi`, `xi_next`: ground-truth endogenous / exogenous state, where known
- `o_alt`, `o_next_alt`: the same (s, s') under another exogenous pair (xi~, xi~'): the paired
  view used by L_X-exo (Eq. 16), consistency metrics and the xi'-swap test
- `q`: the controllable change q_xi = h(s', xi) - h(s, xi) (Eq. 10), a xi-robust target
- `flow`: the optical flow of (o, o') ([..., 2, h, w], `data.flow`), a xi-robust target: the
  agent's motion, mostly insensitive to colour drift
- `label_mask`: bool, which transitions carry an action label (the 1 % label setting)
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from exolam.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Transitions:
    o: torch.Tensor
    o_next: torch.Tensor
    a: Optional[torch.Tensor] = None
    s: Optional[torch.Tensor] = None
    s_next: Optional[torch.Tensor] = None
    xi: Optional[torch.Tensor] = None
    xi_next: Optional[torch.Tensor] = None
    o_alt: Optional[torch.Tensor] = None
    o_next_alt: Optional[torch.Tensor] = None
    q: Optional[torch.Tensor] = None
    flow: Optional[torch.Tensor] = None
    label_mask: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.o.shape != self.o_next.shape:
            raise ConfigError(f"Transitions.o_next shape {tuple(self.o_next.shape)} != o shape {tuple(self.o.shape)}")
        if (self.o_alt is None) != (self.o_next_alt is None):
            raise ConfigError("Transitions.o_alt and o_next_alt must be given together")

    def fields(self) -> dict[str, torch.Tensor]:
        """The tensors that are present, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def __len__(self) -> int:
        return self.o.shape[0]

    def index(self, idx) -> "Transitions":
        """Select along the first dim (a batch of transitions)."""
        return Transitions(**{k: v[idx] for k, v in self.fields().items()})

    def to(self, device) -> "Transitions":
        return Transitions(**{k: v.to(device) for k, v in self.fields().items()})

    def replace(self, **changes) -> "Transitions":
        return dataclasses.replace(self, **changes)
