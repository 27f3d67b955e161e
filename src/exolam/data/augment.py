"""A paired view made by augmentation, for video that has none (Sec. 4.2; App. D's colour / camera xi).

X-exo (Eq. 16), the consistency loss (Fig. 5b) and the xi'-swap test (Sec. 4.2, Fig. 2b) need the same
state pair (s, s') seen under another exogenous trajectory: o~ = h(s, xi~), o~' = h(s', xi~'). Recorded
video has no such render; the paper's LAPA test used OXE-AugE, trajectories re-rendered with the
actions kept. `PairedAugment` draws that second view from the frames themselves, with the two
exogenous factors of Distracting Control (App. D) as xi~:

    colour   o~ = clamp(g * o + b, 0, 1), per channel  g ~ U[1 - color, 1 + color], b ~ U[-color/2, color/2]
    camera   o~ shifted by (dx, dy) ~ U{-shift..shift}^2 pixels, edges replicated (a small camera drift)

One xi~ is drawn for the window's first frame; its next frame keeps it with probability 1 - switch
and draws a fresh xi~' otherwise (the exogenous switch of the Ex-BMDP, p_switch). The draw is a
function of (seed, episode, t) alone (`seeding.paired_augment`), so a window's paired view is the
same in every epoch, process and worker, and for `exolam train` and `exolam diagnose` alike.

What it can and cannot test: the paired view differs from the data only in colour and framing, so a
LAM that passes on it ignores those changes of o' (the noise of Distracting Control, camera shake,
lighting); background motion or other agents are not simulated. Frames are float [C, H, W] in
[0, 1] (decoded video); the shift is in pixels of the frames as the LAM sees them (after
--image-size).
"""

from __future__ import annotations

import dataclasses
import random

import torch
import torch.nn.functional as F

from exolam import seeding
from exolam.errors import ConfigError, check_range

NAME = "augment"


@dataclasses.dataclass(frozen=True)
class PairedAugment:
    color: float = 0.2
    """colour strength: per-channel gain in [1 - color, 1 + color], offset in [-color/2, color/2]"""
    shift: int = 2
    """camera drift: translation by up to `shift` pixels in x and y"""
    switch: float = 0.5
    """probability that the next frame's xi~' is a fresh draw (else it keeps xi~)"""
    seed: int = 0

    def validate(self) -> "PairedAugment":
        check_range("--paired-view color", self.color, 0.0, 1.0)
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ConfigError(f"--paired-view shift = {self.shift!r} must be an integer >= 0 (pixels)")
        check_range("--paired-view switch", self.switch, 0.0, 1.0)
        if self.color == 0 and self.shift == 0:
            raise ConfigError("--paired-view: color = 0 and shift = 0 make the paired view a copy of the data; "
                              "give a colour strength or a shift")
        return self

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> "PairedAugment":
        """`augment` or `augment:color=0.2,shift=2,switch=0.5` (any subset); bad text -> one ConfigError line."""
        text = str(spec).strip()
        name, _, rest = text.partition(":")
        if name != NAME:
            raise ConfigError(f"--paired-view = {text!r}: the one kind is '{NAME}' (e.g. {NAME}:color=0.2,shift=2,"
                              "switch=0.5)")
        kw = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key not in ("color", "shift", "switch"):
                raise ConfigError(f"--paired-view = {text!r}: '{item}' is not color=X, shift=N or switch=P")
            if key in kw:
                raise ConfigError(f"--paired-view = {text!r}: {key} is given twice")
            try:
                kw[key] = int(value) if key == "shift" else float(value)
            except ValueError:
                raise ConfigError(f"--paired-view = {text!r}: {key} = {value!r} is not a number") from None
        return cls(**kw, seed=seed).validate()

    @staticmethod
    def check_camera(video_keys, camera: str) -> None:
        """The augmentation works on decoded video frames in [0, 1]; a numeric camera is refused in one line."""
        if camera not in video_keys:
            raise ConfigError(f"--paired-view augment recolours and shifts video frames in [0, 1]; camera "
                              f"'{camera}' is a numeric feature")

    def spec(self) -> str:
        """The canonical text (what checkpoints and reports record)."""
        return f"{NAME}:color={self.color:g},shift={self.shift},switch={self.switch:g}"

    def _xi(self, rng: random.Random, channels: int) -> tuple:
        # python's random(): its sequence for a seed is fixed across Python versions (randint's is not),
        # and drawing a few scalars here costs microseconds where torch ops would cost a millisecond
        gain = [1 + self.color * (2 * rng.random() - 1) for _ in range(channels)]
        offset = [self.color * (rng.random() - 0.5) for _ in range(channels)]
        n = 2 * self.shift + 1
        dx, dy = (min(int(rng.random() * n), n - 1) - self.shift for _ in range(2))
        return gain, offset, dx, dy

    def apply(self, frame: torch.Tensor, xi: tuple) -> torch.Tensor:
        """h(s, xi~) from h(s, xi): frame [C, H, W] in [0, 1] recoloured, then shifted (content moves by dx, dy)."""
        gain, offset, dx, dy = xi
        c = frame.shape[0]
        out = torch.addcmul(torch.as_tensor(offset, dtype=frame.dtype).view(c, 1, 1), frame,
                            torch.as_tensor(gain, dtype=frame.dtype).view(c, 1, 1)).clamp_(0, 1)
        if dx or dy:
            s = self.shift
            h, w = out.shape[-2:]
            padded = F.pad(out[None], (s, s, s, s), mode="replicate")[0]
            out = padded[:, s - dy: s - dy + h, s - dx: s - dx + w].contiguous()
        return out

    def view(self, episode: int, t: int, o: torch.Tensor) -> torch.Tensor:
        """o~ alone: the first frame of window (episode, t) under its xi~ (the o~ of `views`)."""
        rng = random.Random(seeding.paired_augment(self.seed, episode, t))
        return self.apply(o, self._xi(rng, o.shape[0]))

    def views(self, episode: int, t: int, o: torch.Tensor, o_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(o~, o~') of the window (episode, t): xi~ for o, and for o' the same xi~ or (prob. switch) a fresh one."""
        rng = random.Random(seeding.paired_augment(self.seed, episode, t))
        xi = self._xi(rng, o.shape[0])  # drawn first, as `view` draws it
        keep = rng.random() >= self.switch
        xi_next = self._xi(rng, o.shape[0])
        return self.apply(o, xi), self.apply(o_next, xi if keep else xi_next)
