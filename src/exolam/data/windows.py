"""Frame windows (o_t, o_{t+k}) of a LeRobot dataset as `Transitions` batches, decoded in DataLoader workers.

`WindowDataset` item i is one window of one episode, never crossing an episode boundary: windows
are enumerated episode-major (episode 0's t = 0..len_0-1-k, then episode 1's, ...), k = frame_gap;
an episode of length <= k contributes none. `fields` maps `Transitions` names to dataset feature keys:

    o           required: o at t, o_next (same key) at t+k
    a           the action at t
    o_alt       a paired view at t; o_next_alt (same key) at t+k
    label_mask  bool at t
    s, xi       at t; s_next, xi_next (same key) at t+k

Video frames become float32 [C, H, W] in [0, 1], resized to image_size x image_size (bilinear with
antialiasing) when given. Numeric features come as stored ([*shape] in their dtype), except that an
integer or bool feature of shape (1,) becomes one value per transition (a discrete action index or a
mask: [B] in the batch, as `Transitions` holds them). Nothing is preloaded: frames are decoded in
`__getitem__`, i.e. in the worker processes, so a dataset larger than memory trains.

Derived fields, computed per item (so in the workers too):

    label_mask  `labelled_episodes`: True in the windows of those episodes, False elsewhere (the
                label-fraction setting of App. D / LAOM: whole labelled trajectories)
    flow        `flow=True`: the optical flow of (o, o_next) (`data.flow.optical_flow`, DIS, 8 x 8),
                the target of the `robust-flow` objective term (App. D "Flow-pred"). Flow is a
                deterministic function of the window, so each process computes a window's flow once
                and keeps it (2 x 8 x 8 float32 = 512 B per window: 0.5 GB for a million windows);
                from the second epoch on, a window's flow costs a lookup instead of a DIS solve
    o_alt       `paired_view=PairedAugment(...)` (data/augment.py): o_alt and o_next_alt drawn from o
                and o_next by a colour / camera augmentation of their own (seeded per window), for
                video without a recorded paired view; refused beside an `o_alt` field

`frame_stack=N` (App. D's temporal context): the image fields `o` and `o_alt` hold the last N frames,
channel-stacked oldest first ([N * C, H, W]): o_t = (I_{t-N+1}, ..., I_t), o_next = (I_{t+k-N+1}, ...,
I_{t+k}); a frame before the episode's first is that first frame (LeRobot pads `delta_timestamps` the
same way), so a stack never reaches into another episode. The flow target is that of the last frames.

`features={key: CachedFeatures}` (data/features.py): the values of a camera key are read from its
feature cache, f(I) of every frame computed once by a frozen encoder, instead of decoded (the frames
are not resized then: the cache was made at the training image size). Refused beside `flow` or
`paired_view`, which need the frames themselves.

`WindowSource` is a batch source (see data/sampling.py): update k trains on the windows
`batch_indices(seed, len(dataset), steps, batch_size)[k]`, the same rows a `TensorSource` over the
same windows draws, so both yield identical batches for the same seed.
"""

from __future__ import annotations

import bisect
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from exolam.data.lerobot import LeRobotDataset, open_dataset
from exolam.data.sampling import batch_indices
from exolam.data.transitions import Transitions
from exolam.errors import ConfigError, check_positive_int

AT_T = ("o", "a", "o_alt", "label_mask", "s", "xi")  # the fields a dataset key can be given for
STACKED = ("o", "o_alt")  # the image fields `frame_stack` stacks
NEXT = {"o": "o_next", "o_alt": "o_next_alt", "s": "s_next", "xi": "xi_next"}  # also read at t+k


class WindowDataset(torch.utils.data.Dataset):
    """Windows (t, t+k) inside episodes of a LeRobot dataset; items are dicts of tensors (see `collate`)."""

    def __init__(self, dataset_or_root, fields: dict[str, str], frame_gap: int = 1, image_size: int | None = None,
                 episodes=None, labelled_episodes=None, flow: bool = False, paired_view=None, features=None,
                 frame_stack: int = 1):
        ds = dataset_or_root if isinstance(dataset_or_root, LeRobotDataset) else open_dataset(dataset_or_root)
        check_positive_int("frame_gap", frame_gap)
        if image_size is not None:
            check_positive_int("image_size", image_size)
        if not isinstance(fields, dict) or "o" not in fields:
            raise ConfigError(f"fields = {fields!r} must map Transitions fields to dataset keys and include 'o'")
        for name, key in fields.items():
            if name not in AT_T:
                raise ConfigError(f"fields: '{name}' is not one of {list(AT_T)} (o_next etc. follow from o)")
            if key not in ds.features:
                raise ConfigError(f"fields['{name}'] = {key!r} is not a feature of {ds.root} "
                                  f"(features: {sorted(ds.features)})")
            if key not in ds.video_keys and key not in ds.numeric_keys:
                raise ConfigError(f"fields['{name}'] = {key!r} has dtype '{ds.features[key]['dtype']}', which is "
                                  "neither a video nor numeric")
        n_eps = len(ds.episode_lengths)
        self.episodes = list(range(n_eps)) if episodes is None else [int(e) for e in episodes]
        for e in self.episodes:
            if not 0 <= e < n_eps:
                raise ConfigError(f"episodes: {e} is out of range 0..{n_eps - 1} of {ds.root}")
        self.dataset, self.fields, self.frame_gap, self.image_size = ds, dict(fields), frame_gap, image_size
        if labelled_episodes is not None and "label_mask" in fields:
            raise ConfigError("give label_mask either as a dataset field or as labelled_episodes, not both")
        self.labelled = None if labelled_episodes is None else frozenset(int(e) for e in labelled_episodes)
        for e in self.labelled or ():
            if not 0 <= e < n_eps:
                raise ConfigError(f"labelled_episodes: {e} is out of range 0..{n_eps - 1} of {ds.root}")
        self.flow = bool(flow)
        check_positive_int("frame_stack", frame_stack)
        if frame_stack > 1 and paired_view is not None:
            raise ConfigError("frame_stack > 1: the augmented paired view draws one frame's view; use a recorded "
                              "paired view")
        self.frame_stack = frame_stack
        if paired_view is not None:
            if "o_alt" in fields:
                raise ConfigError(f"the paired view comes either from the dataset ('{fields['o_alt']}') or from "
                                  "--paired-view augment, not both")
            paired_view.check_camera(ds.video_keys, fields["o"])
        self.paired_view = paired_view
        self.features = dict(features or {})
        for key, cache in self.features.items():
            if key not in fields.values():
                raise ConfigError(f"features: '{key}' is not one of the fields' keys {sorted(set(fields.values()))}")
            if flow or paired_view is not None:
                raise ConfigError("cached features replace the frames, which flow and an augmented paired view need")
            if list(cache.lengths) != list(ds.episode_lengths):
                raise ConfigError(f"{cache.path}: a feature cache of episodes {cache.lengths[:4]}..., not of {ds.root}")
        self._flow_cache: dict[int, torch.Tensor] = {}  # window -> its flow (filled as windows are read)
        self._starts = [0]  # window number of each episode's first window
        for e in self.episodes:
            self._starts.append(self._starts[-1] + max(0, ds.episode_lengths[e] - frame_gap))
        if len(self) == 0:
            raise ConfigError(f"{ds.root}: no episode is longer than frame_gap = {frame_gap}, so there are no windows")

    def __len__(self) -> int:
        return self._starts[-1]

    def window(self, i: int) -> tuple[int, int]:
        """(episode, t) of window i: the pair (t, t + frame_gap) of that episode."""
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} is out of range 0..{len(self) - 1}")
        j = bisect.bisect_right(self._starts, i) - 1
        return self.episodes[j], i - self._starts[j]

    def __getitem__(self, i) -> dict[str, torch.Tensor]:
        episode, t = self.window(int(i))
        item, done = {}, {}  # done: a key read for two fields (o and o_alt) is decoded once
        for name, key in self.fields.items():
            times = (t, t + self.frame_gap) if name in NEXT else (t,)
            n = self.frame_stack if name in STACKED else 1
            if (key, times) not in done:
                span = [max(u - j, 0) for u in times for j in range(n - 1, -1, -1)]  # clamped at the first frame
                frames = self._values(key, episode, span)
                done[(key, times)] = [torch.cat(frames[i * n:(i + 1) * n]) if n > 1 else frames[i]
                                      for i in range(len(times))]
            values = done[(key, times)]
            item[name] = values[0]
            if name in NEXT:
                item[NEXT[name]] = values[1]
        if self.labelled is not None:
            item["label_mask"] = torch.tensor(episode in self.labelled)
        if self.paired_view is not None:
            item["o_alt"], item["o_next_alt"] = self.paired_view.views(episode, t, item["o"], item["o_next"])
        if self.flow:  # of the last frames of a stack
            c = item["o"].shape[0] // self.frame_stack
            item["flow"] = self._flow(int(i), item["o"][-c:], item["o_next"][-c:])
        return item

    def _flow(self, i: int, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        if i not in self._flow_cache:
            from exolam.data.flow import optical_flow

            self._flow_cache[i] = optical_flow(o, o_next)
        return self._flow_cache[i]

    def _values(self, key: str, episode: int, times: list[int]) -> list[torch.Tensor]:
        ds = self.dataset
        if key in self.features:  # f(I) from the cache: float16 on disk, float32 here
            cached = self.features[key][episode]
            return [torch.from_numpy(np.array(cached[t], dtype=np.float32)) for t in times]  # a copy: mmap is read-only
        if key in ds.video_keys:
            frames = torch.from_numpy(ds.frames_at(key, episode, times)).permute(0, 3, 1, 2).float().div_(255)
            if self.image_size is not None and frames.shape[-2:] != (self.image_size, self.image_size):
                frames = F.interpolate(frames, size=(self.image_size, self.image_size), mode="bilinear",
                                       antialias=True, align_corners=False)
            return list(frames)  # (n, C, H, W) -> n x (C, H, W)
        col = ds.column(key, episode)
        scalar = col.dtype.kind in "biu" and col.shape[1:] == (1,)
        return [torch.from_numpy(np.array(col[t, 0] if scalar else col[t])) for t in times]


def collate(items: list[dict[str, torch.Tensor]]) -> Transitions:
    """Stack items of `WindowDataset` into one `Transitions` batch."""
    return Transitions(**{name: torch.stack([it[name] for it in items]) for name in items[0]})


class _Rows(torch.utils.data.Sampler):
    """The batch sampler: rows start..steps-1 of the minibatch stream, as index lists."""

    def __init__(self, seed: int, n: int, steps: int, batch_size: int):
        self.seed, self.n, self.steps, self.batch_size, self.start = seed, n, steps, batch_size, 0

    def __iter__(self):
        for idx in batch_indices(self.seed, self.n, self.steps, self.batch_size, self.start):
            yield idx.tolist()

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def _worker_init(_):
    torch.set_num_threads(1)


class WindowSource:
    """Batch source over a `WindowDataset`: the windows of `batch_indices(seed, len(ds), steps, batch_size)`."""

    def __init__(self, window_dataset: WindowDataset, seed: int, steps: int, batch_size: int, num_workers: int = 0,
                 device: str | torch.device = "cpu"):
        check_positive_int("steps", steps)
        check_positive_int("batch_size", batch_size)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"num_workers = {num_workers!r} must be an integer >= 0")
        self.dataset, self.seed, self.steps, self.batch_size = window_dataset, seed, steps, batch_size
        self.num_workers, self.device = num_workers, torch.device(device)
        self._rows = _Rows(seed, len(window_dataset), steps, batch_size)
        self._loader = torch.utils.data.DataLoader(
            window_dataset, batch_sampler=self._rows, num_workers=num_workers, collate_fn=collate,
            pin_memory=self.device.type == "cuda", persistent_workers=num_workers > 0,
            worker_init_fn=_worker_init if num_workers > 0 else None)

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, start: int = 0) -> Iterator[Transitions]:
        """Global batches of updates start, start+1, ..., steps-1."""
        self._rows.start = start  # read when the loader's iterator starts (in this process)
        for batch in self._loader:
            yield batch.to(self.device) if self.device.type != "cpu" else batch

    def spec(self) -> dict:
        ds = self.dataset
        return {"kind": "lerobot-windows", "root": str(ds.dataset.root), "version": ds.dataset.version,
                "fields": dict(ds.fields), "frame_gap": ds.frame_gap, "image_size": ds.image_size,
                "episodes": len(ds.episodes), "n": len(ds), "seed": self.seed,
                "labelled_episodes": None if ds.labelled is None else sorted(ds.labelled), "flow": ds.flow,
                **({} if ds.paired_view is None else {"paired_view": ds.paired_view.spec()}),
                **({} if not ds.features else {"features": {k: str(c.path) for k, c in ds.features.items()}}),
                **({} if ds.frame_stack == 1 else {"frame_stack": ds.frame_stack})}


def frame_change(dataset_or_root, key: str, image_size: int | None, max_gap: int = 16, windows: int = 64,
                 seed: int = 0) -> dict[int, float]:
    """How much a camera's frames change with the gap: {k: mean over windows of RMS(I_{t+k} - I_t)}.

    `windows` start frames t are drawn (seeded) among those with t + K inside the episode, K = max_gap
    or less where no episode is that long (K = longest episode - 1); each is decoded once as the run
    I_t .. I_{t+K} (values in [0, 1], resized to image_size as training resizes them), so every gap is
    measured on the same windows. What `exolam train` picks its default frame gap from."""
    ds = dataset_or_root if isinstance(dataset_or_root, LeRobotDataset) else open_dataset(dataset_or_root)
    gap = min(max_gap, max(ds.episode_lengths) - 1)
    if gap < 1:
        raise ConfigError(f"{ds.root}: every episode has one frame; there is no frame change to measure")
    wd = WindowDataset(ds, {"o": key}, frame_gap=gap, image_size=image_size)
    pick = np.random.default_rng(seed).choice(len(wd), min(windows, len(wd)), replace=False)
    rms = np.zeros((len(pick), gap))
    for row, i in enumerate(sorted(pick.tolist())):
        episode, t = wd.window(i)
        run = torch.stack(wd._values(key, episode, list(range(t, t + gap + 1))))
        rms[row] = ((run[1:] - run[0]) ** 2).flatten(1).mean(1).sqrt().numpy()
    return {k: float(rms[:, k - 1].mean()) for k in range(1, gap + 1)}
