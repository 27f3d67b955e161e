"""`exolam diagnose encoder`: how much exogenous energy each candidate encoder f lets through (Sec. 4.3).

Remark 4.3 splits the exogenous energy of the next observation o' = f(I') as

    E[||eps||^2 | s'] = P[xi' != xi | s'] * E[||h(s', xi') - h(s', xi)||^2 | s', xi' != xi]       (Eq. 12)
                     <= P[xi' != xi | s'] * delta_h(s'),   delta_h(s) = sup ||h(s, xi~) - h(s, xi)||^2  (Eq. 13-14)

with h = f o render. The switching frequency belongs to the environment; the encoder acts only
through delta_h, so an encoder with a lower delta_h sends less exogenous energy into the LAM (Eq. 14).
Before training, on paired data (the camera `KEY` and `KEY_alt`, the same state rendered under another
exogenous state; data/fields.py), for up to `max_frames` frames t >= 1 evenly spread over the episodes:

- delta_h: `metrics.encoder.xi_sensitivity` on (f(I_t), f(I_alt_t)): mean, max, between (frames of other
  states) and relative = mean / between, the scale-free number to compare encoders by (raw values scale
  with f's dimension and range; a constant f has delta_h = 0 and carries nothing, relative = NaN).
- exo_energy: `metrics.latent.exo_energy` with h_next_same = f(I'), h_next_other = f(I'_alt) (I' = frame t)
  and switched = [xi_alt != xi at t] when the dataset stores `xi` and `xi_alt` (else all True): the split
  of Eq. (12) over the pairs the data holds (energy = switch_freq * sensitivity, exactly, since equal xi
  render equal frames). The renders' xi_alt is drawn afresh, not by the environment's dynamics, so
  `env_switch_freq` = P[xi_t != xi_{t-1}] (from `xi`) is reported beside it, and
  `energy_env` = env_switch_freq * sensitivity is Eq. (12) for the data's own transitions, exact when a
  switch draws xi' like xi_alt is drawn (the discrete mode), an upper-bound-style estimate in the
  drift mode, where xi moves a little at every step (Eq. 14 with the sampled delta_h).

`--paired-view augment[:color=C,shift=P]` makes I_alt from I_t by a colour / camera augmentation
instead (data/augment.py; for video without `KEY_alt`): delta_h then measures f's sensitivity to those
changes only, and every pair counts as switched (no env_switch_freq).

Writes R/encoder.json (everything) and R/encoder.md (a table, ranked by relative delta_h); both
atomically, after every encoder has been measured, and refuses to replace an existing R/encoder.json.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from exolam.data.augment import PairedAugment
from exolam.data.features import load_frames
from exolam.data.fields import camera_key, lam_fields
from exolam.data.lerobot import LeRobotDataset, open_dataset
from exolam.errors import ConfigError, check_positive_int
from exolam.metrics.encoder import xi_sensitivity
from exolam.metrics.latent import exo_energy
from exolam.models.encoders import SPECS, Encoder, load_encoder
from exolam.runs.files import atomic_write, finite_json
from exolam.runs.outdir import claim
from exolam.workflows.diagnose_report import short_num

PLAIN = "lower relative delta_h = less exogenous energy reaches the LAM (Eq. 14)"


def sample_frames(ds: LeRobotDataset, max_frames: int) -> list[tuple[int, int]]:
    """Up to max_frames (episode, t) with t >= 1 (so xi_{t-1} exists), evenly spaced over all episodes."""
    pool = [(e, t) for e, n in enumerate(ds.episode_lengths) for t in range(1, n)]
    if len(pool) < 2:
        raise ConfigError(f"{ds.root}: needs at least 2 frames after the first of an episode to diagnose an encoder")
    keep = np.unique(np.linspace(0, len(pool) - 1, min(max_frames, len(pool))).round().astype(int))
    return [pool[i] for i in keep]


def _frames(ds: LeRobotDataset, key: str, picks, image_size) -> torch.Tensor:
    """The picked frames of `key`, one decode call per episode, in the order of `picks` (episode-major)."""
    by_ep: dict[int, list[int]] = {}
    for e, t in picks:
        by_ep.setdefault(e, []).append(t)
    return torch.cat([load_frames(ds, key, e, ts, image_size) for e, ts in by_ep.items()])


def _switches(ds: LeRobotDataset, picks) -> tuple[torch.Tensor, float | None]:
    """[xi_alt != xi at t] per pick (all True without xi/xi_alt) and P[xi_t != xi_{t-1}] (None without xi)."""
    if "xi" not in ds.numeric_keys:
        return torch.ones(len(picks), dtype=torch.bool), None
    xi = {e: ds.column("xi", e) for e in {e for e, _ in picks}}
    env = float(np.mean([np.any(xi[e][t] != xi[e][t - 1]) for e, t in picks]))
    if "xi_alt" not in ds.numeric_keys:
        return torch.ones(len(picks), dtype=torch.bool), env
    alt = {e: ds.column("xi_alt", e) for e in xi}
    return torch.tensor([bool(np.any(alt[e][t] != xi[e][t])) for e, t in picks]), env


def _features(enc: Encoder, x: torch.Tensor, batch: int, device) -> torch.Tensor:
    return torch.cat([enc(x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])


def measure(enc: Encoder, o: torch.Tensor, o_alt: torch.Tensor, switched: torch.Tensor, env_freq: float | None,
            batch: int = 64, device="cpu") -> dict:
    """delta_h (Eq. 13) and the exogenous-energy split (Eq. 12) of one encoder on paired frames."""
    t0 = time.perf_counter()
    f, f_alt = _features(enc, o, batch, device), _features(enc, o_alt, batch, device)
    seconds = time.perf_counter() - t0
    d = xi_sensitivity(lambda x: x, f, f_alt)  # features already computed: h = identity on them
    energy = exo_energy(f.flatten(1), f_alt.flatten(1), switched)
    row = {"encoder": enc.name, "feature_shape": list(f.shape[1:]), "feature_dim": int(f[0].numel()),
           "delta_h": d, "delta_h_per_dim": d["mean"] / f[0].numel(), "exo_energy": energy,
           "env_switch_freq": env_freq,
           "energy_env": None if env_freq is None else env_freq * energy["sensitivity"],
           "frames_per_s": 2 * len(o) / seconds if seconds > 0 else math.nan}
    return row


def diagnose_encoder(spec, data_root, camera: str | None, out_dir, image_size: int | None = None,
                     max_frames: int = 2048, device: str = "cpu", batch: int = 64,
                     paired_view: PairedAugment | None = None) -> dict:
    """Measure delta_h and the Eq. (12) split for one or several encoders; write R/encoder.{json,md}.

    spec: a spec string, an `Encoder`, or a list of them (compared in one table). Returns the dict
    written to encoder.json: {"data": {...}, "encoders": [row per spec, in the given order], "ranking"}.
    paired_view: I_alt = the frame under an augmentation's xi~ (data/augment.py) instead of `<camera>_alt`.
    """
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not specs:
        raise ConfigError("--encoder: give at least one encoder spec (" + " | ".join(SPECS) + ")")
    check_positive_int("--max-frames", max_frames)
    check_positive_int("batch", batch)
    if image_size is not None:
        check_positive_int("--image-size", image_size)
    out = Path(out_dir)
    if (out / "encoder.json").exists():
        raise ConfigError(f"{out / 'encoder.json'}: exists (an earlier diagnosis); choose another --out")
    ds = open_dataset(data_root)
    camera = camera_key(ds, camera)
    if paired_view is not None:
        paired_view.check_camera(ds.video_keys, camera)
    alt = paired_view.spec() if paired_view else lam_fields(ds, camera, paired=True, what="diagnose encoder")["o_alt"]
    encoders = [load_encoder(s) for s in specs]  # every spec checked before the slow part
    with claim(out, {"--data": ds.root}):
        picks = sample_frames(ds, max_frames)
        o = _frames(ds, camera, picks, image_size)
        if paired_view is None:
            o_alt = _frames(ds, alt, picks, image_size)
            switched, env_freq = _switches(ds, picks)
        else:  # xi~ of the window starting at (e, t); every frame's view differs from it
            o_alt = torch.stack([paired_view.view(e, t, x) for (e, t), x in zip(picks, o)])
            switched, env_freq = torch.ones(len(picks), dtype=torch.bool), None
        rows = [measure(enc.to(device), o, o_alt, switched, env_freq, batch, device) for enc in encoders]
        rel = [r["delta_h"]["relative"] for r in rows]
        ranking = [rows[i]["encoder"] for i in sorted(range(len(rows)), key=lambda i: (math.isnan(rel[i]), rel[i]))]
        result = {"data": {"root": str(ds.root.absolute()), "camera": camera, "alt": alt, "image_size": image_size,
                           "frames": len(picks), "episodes": len({e for e, _ in picks}),
                           "frame_shape": list(o.shape[1:])},
                  "encoders": rows, "ranking": ranking, "meaning": PLAIN}
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{out}: cannot create the output folder ({e.strerror or e}); choose another "
                              "--out") from None
        atomic_write(out / "encoder.md", markdown(result))
        atomic_write(out / "encoder.json", json.dumps(finite_json(result), indent=2) + "\n")  # last: marks completion
    return result


def markdown(result: dict) -> str:
    """The short report: one row per encoder, best (lowest relative delta_h) first."""
    d = result["data"]
    lines = ["# Encoder xi-sensitivity (Remark 4.3, Eq. 12-14)", "",
             f"Data: `{d['root']}`, camera `{d['camera']}` paired with `{d['alt']}`, {d['frames']} frames of "
             f"{d['episodes']} episodes, frames {'x'.join(map(str, d['frame_shape']))}.", "",
             f"**{PLAIN}.**", "",
             "| rank | encoder | features | relative delta_h | delta_h mean | delta_h max | per dim | "
             "switch freq (pairs) | energy (Eq. 12) | env switch freq | energy at env freq | frames/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_name = {r["encoder"]: r for r in result["encoders"]}
    for i, name in enumerate(result["ranking"], 1):
        r = by_name[name]
        dh, en = r["delta_h"], r["exo_energy"]
        cells = [dh["relative"], dh["mean"], dh["max"], r["delta_h_per_dim"], en["switch_freq"], en["energy"],
                 r["env_switch_freq"], r["energy_env"], r["frames_per_s"]]
        lines.append(f"| {i} | `{name}` | {'x'.join(map(str, r['feature_shape']))} | "
                     + " | ".join(short_num(c) for c in cells) + " |")
    lines += ["", "relative delta_h = E||f(I) - f(I_alt)||^2 / E||f(I_i) - f(I_j)||^2 (pairs of other frames): "
              "0 = f ignores the exogenous state, ~1 = f moves as much with it as between unrelated frames. "
              "Raw delta_h values depend on each encoder's dimension and scale; compare the relative column. "
              "A constant encoder has delta_h 0 but carries no information either (relative n/a).", ""]
    return "\n".join(lines)
