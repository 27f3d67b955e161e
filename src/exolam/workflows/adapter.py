"""Plug any LAM into exolam's metrics and `diagnose`: two callables become the LAM protocol.

The protocol (models/base.py; Sec. 3, Eq. 5 of the paper) needs only

    encode(o, o_next) -> z [B, d_z]          psi_IDM
    decode(o, z)      -> o_next_hat          psi_FDM (a frame shaped like o for the pixel metrics)

so a model from another codebase (LAPA's LAQ, a LAPO checkpoint, a Genie-style tokenizer) is
diagnosed by wrapping its two halves. Frames arrive as float [B, C, H, W] in [0, 1] (as
data/windows.py reads them); convert inside the callables if the model wants another range.

Example (runnable; a hand-made LAM that is not exolam's, a plain torch module pair):

    >>> import torch
    >>> from torch import nn
    >>> from exolam.workflows.adapter import LAMAdapter
    >>> idm = nn.Sequential(nn.Flatten(), nn.Linear(2 * 16, 4))            # [o, o'] -> z
    >>> fdm = nn.Linear(16 + 4, 16)                                        # [o, z] -> o'
    >>> model = LAMAdapter(
    ...     encode=lambda o, o_next: idm(torch.cat([o, o_next], 1)),
    ...     decode=lambda o, z: fdm(torch.cat([o.flatten(1), z], 1)).view_as(o),
    ...     name="my-lam", modules=[idm, fdm], frame_shape=(1, 4, 4))
    >>> o = torch.rand(8, 1, 4, 4)
    >>> model.encode(o, o).shape, model.decode(o, model.encode(o, o)).shape
    (torch.Size([8, 4]), torch.Size([8, 1, 4, 4]))

then `exolam.workflows.diagnose.diagnose(model, "path/to/lerobot_dataset", "report_dir")`.

Options: `modules` (the nn.Modules behind the callables; registered here so that `diagnose` puts them
in eval mode and restores them afterwards), `frame_shape` (C, H, W) the model expects (checked against
the data: a mismatch is one ConfigError line), `idm` (optional callable (o, o_next) -> IDMOutput, for
codebook usage and the code-flip rate of a VQ model), `codebook_size` (K, for the collapse check).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from exolam.errors import ConfigError


class LAMAdapter(nn.Module):
    """Two callables as a LAM: `encode(o, o_next) -> z`, `decode(o, z) -> o_next_hat` (models/base.py)."""

    def __init__(self, encode: Callable, decode: Callable, name: str = "adapted LAM",
                 modules: Sequence[nn.Module] = (), frame_shape: tuple[int, int, int] | None = None,
                 idm: Callable | None = None, codebook_size: int | None = None):
        super().__init__()
        if not callable(encode) or not callable(decode):
            raise ConfigError("LAMAdapter: encode and decode must be callables (encode(o, o_next), decode(o, z))")
        if frame_shape is not None and (len(frame_shape) != 3 or not all(int(d) > 0 for d in frame_shape)):
            raise ConfigError(f"LAMAdapter: frame_shape = {frame_shape!r} must be (C, H, W)")
        self._encode, self._decode, self.name = encode, decode, name
        owners = list(modules) + [getattr(f, "__self__", None) for f in (encode, decode)]
        self.wrapped = nn.ModuleList(dict.fromkeys(m for m in owners if isinstance(m, nn.Module)))
        self.frame_shape = None if frame_shape is None else tuple(int(d) for d in frame_shape)
        self.codebook_size = codebook_size
        if idm is not None:
            self.idm = idm  # only then: diagnose reads codes when the model has `idm`

    def encode(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        z = self._encode(o, o_next)
        if not isinstance(z, torch.Tensor) or z.ndim < 1 or z.shape[0] != o.shape[0]:
            raise ConfigError(f"{self.name}: encode returned {type(z).__name__} of shape "
                              f"{tuple(getattr(z, 'shape', ()))} for {o.shape[0]} frames (a tensor [B, d_z] expected)")
        return z.reshape(z.shape[0], -1)

    def decode(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self._decode(o, z)

    def forward(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        return self.decode(o, self.encode(o, o_next))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, frame_shape={self.frame_shape}"
