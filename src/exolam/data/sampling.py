"""Minibatch streams: which transitions update k trains on, as a function of (seed, k) alone.

Every training loop draws its minibatches from `batch_indices(seed, n, steps, batch_size)`: row k
holds the `batch_size` indices (uniform with replacement, < n) of update k. A run resumed at update
k regenerates the stream and skips the first k rows (`start=k`), so resumed and uninterrupted runs
see the same batches; a linear ensemble, the engine and a dataset-backed loader with the same seed
see the same batches too, which is what makes their results comparable bit for bit.

A *batch source* is what the engine trains on (`train.engine.fit`): an object with

    batches(start: int) -> Iterator[Transitions]      # global batches of updates start, start+1, ...
    spec() -> dict                                    # JSON description (recorded in checkpoints)

`TensorSource` serves in-memory `Transitions`; `data.windows.WindowSource` serves frame windows
decoded from a LeRobot dataset in worker processes.
"""

from __future__ import annotations

from typing import Iterator

import torch

from exolam import seeding
from exolam.data.transitions import Transitions

CHUNK = 1000  # rows drawn per generator call (part of the stream's definition: changing it changes batches)


def batch_indices(seed: int, n: int, steps: int, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]:
    """Rows start..steps-1 of the minibatch stream of `seed`: int64 tensors of `batch_size` indices < n."""
    g = torch.Generator().manual_seed(seeding.minibatches(seed))
    done = 0
    while done < steps:
        k = min(CHUNK, steps - done)
        rows = torch.randint(n, (k, batch_size), generator=g)
        if done + k > start:
            yield from rows[max(0, start - done):]
        done += k


class TensorSource:
    """Batches of in-memory `Transitions` (only the `fields` an objective reads are gathered)."""

    def __init__(self, data: Transitions, seed: int, steps: int, batch_size: int,
                 fields: tuple[str, ...] | None = None, device: str | torch.device = "cpu"):
        keep = data.fields() if fields is None else {k: v for k, v in data.fields().items() if k in fields}
        self.data = Transitions(**{k: v.to(device) for k, v in keep.items()})
        self.seed, self.steps, self.batch_size, self.device = seed, steps, batch_size, torch.device(device)

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, start: int = 0) -> Iterator[Transitions]:
        for idx in batch_indices(self.seed, len(self.data), self.steps, self.batch_size, start):
            yield self.data.index(idx.to(self.device))

    def spec(self) -> dict:
        return {"kind": "tensors", "n": len(self.data), "seed": self.seed, "fields": sorted(self.data.fields())}


def labelled_episodes(n_episodes: int, fraction: float, seed: int) -> list[int]:
    """The episodes that carry action labels in the label-fraction setting (App. D; LAOM labels whole
    trajectories): max(1, round(fraction * n_episodes)) of them, drawn by `seeding.labelled_episodes(seed)`."""
    import numpy as np

    from exolam import seeding

    k = min(n_episodes, max(1, round(fraction * n_episodes)))
    perm = np.random.default_rng(seeding.labelled_episodes(seed)).permutation(n_episodes)
    return sorted(int(e) for e in perm[:k])
