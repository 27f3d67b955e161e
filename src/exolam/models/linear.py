"""Linear LAM (Eq. 8-9): z = C o + D o',  o'_hat = A o + B z.

`LinearLAM` is one model with the LAM protocol of `models/base.py` (idm / fdm / encode / decode);
`LinearParams` holds M models stacked along a leading dim, the layout the ensemble trainer
(`train.train_linear_ensemble`) updates with closed-form gradients. Initialisation is
nn.Linear's (U(-1/sqrt(fan_in), 1/sqrt(fan_in))) drawn from the model's own seed, so model m of an
ensemble starts exactly where a one-by-one run with the same seed starts.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from exolam import seeding
from exolam.models.base import LAM, IDMOutput


@dataclasses.dataclass
class LinearParams:
    """Stacked parameters of M linear LAMs (+ the L_xi-robust heads W of Eq. 19).

    A (M, d_o, d_o), B (M, d_o, d_z), E = [C D] (M, d_z, 2 d_o), W_a (M, d_a, d_z), W_q (M, d_o, d_z)
    """

    A: torch.Tensor
    B: torch.Tensor
    E: torch.Tensor
    W_a: torch.Tensor
    W_q: torch.Tensor

    @property
    def C(self) -> torch.Tensor:
        return self.E[..., : self.A.shape[-1]]

    @property
    def D(self) -> torch.Tensor:
        return self.E[..., self.A.shape[-1] :]

    def tensors(self) -> list[torch.Tensor]:
        return [self.A, self.B, self.E, self.W_a, self.W_q]

    @staticmethod
    def init(seeds: list[int], d_o: int, d_z: int, d_a: int) -> "LinearParams":
        """nn.Linear-style init, one generator per model seed (independent of the ensemble)."""
        parts = {k: [] for k in ("A", "B", "E", "W_a", "W_q")}
        shapes = {"A": (d_o, d_o), "B": (d_o, d_z), "E": (d_z, 2 * d_o), "W_a": (d_a, d_z), "W_q": (d_o, d_z)}
        fan_in = {"A": d_o, "B": d_z, "E": d_o, "W_a": d_z, "W_q": d_z}
        for seed in seeds:
            g = torch.Generator().manual_seed(seeding.linear_init(seed))
            for k, shape in shapes.items():
                bound = fan_in[k] ** -0.5
                parts[k].append((torch.rand(shape, generator=g) * 2 - 1) * bound)
        return LinearParams(**{k: torch.stack(v) for k, v in parts.items()})

    def select(self, m: int) -> "LinearLAM":
        """Model m as a standalone `LinearLAM` (copies)."""
        model = LinearLAM(self.A.shape[-1], self.B.shape[-1])
        with torch.no_grad():
            model.A.copy_(self.A[m]), model.B.copy_(self.B[m]), model.C.copy_(self.C[m]), model.D.copy_(self.D[m])
        return model

    def encode(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """z = C o + D o' for every model: o, o_next (M, N, d_o) -> (M, N, d_z)."""
        return torch.cat([o, o_next], -1) @ self.E.transpose(1, 2)

    def decode(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """o'_hat = A o + B z for every model: (M, N, d_o), (M, N, d_z) -> (M, N, d_o)."""
        return o @ self.A.transpose(1, 2) + z @ self.B.transpose(1, 2)


class LinearLAM(LAM):
    """One linear LAM (Eq. 8-9) with parameters A, B, C, D; no bottleneck loss."""

    def __init__(self, d_o: int, d_z: int):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(d_o, d_o))
        self.B = nn.Parameter(torch.zeros(d_o, d_z))
        self.C = nn.Parameter(torch.zeros(d_z, d_o))
        self.D = nn.Parameter(torch.zeros(d_z, d_o))
        self.d_z = d_z

    def idm(self, o: torch.Tensor, o_next: torch.Tensor) -> IDMOutput:
        z = o @ self.C.T + o_next @ self.D.T  # Eq. (8)
        return IDMOutput(z=z, z_pre=z, codes=None, loss=z.new_zeros(()))

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return o @ self.A.T + z @ self.B.T  # Eq. (9)


