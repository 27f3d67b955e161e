"""`exolam diagnose target`: how exogenous-robust a prediction target y(o, o') is, before training (Def. 4.7).

Def. 4.7 calls y eta-robust when ||y(o, o') - y(o~, o~')||^2 <= eta for one state pair (s, s') seen
under two exogenous trajectories: o = h(s, xi), o' = h(s', xi'), o~ = h(s, xi~), o~' = h(s', xi~').
Prop. 4.8 bounds the mismatch of z across exogenous states by L_xi-robust (Eq. 19) and eta, so adding
lambda L_xi-robust makes z consistent only as far as y itself ignores xi, and helps only if y also
carries the action. Both are measured on paired data (the camera KEY and KEY_alt: the same physics
under the paired view's own xi trajectory, as `exolam control collect` writes), on up to
`max_windows` windows (o_t, o_{t+k}) drawn as `exolam diagnose` draws them (data/windows.py, split by
episode in halves for the probes):

- eta: `metrics.encoder.target_robustness(y, y~)`, on all drawn windows: mean = E||y - y~||^2, max =
  the sample sup of Eq. (18) (a lower bound of eta), relative = mean / E||y - E y||^2 (0: y ignores
  xi, as an action label does; ~2: y~ is independent of y), independent = the chance level of
  relative (what a y~ independent of y with its measured spread and mean would give: 2 only when
  the paired view spreads y as the main one does). Rank targets by `relative`: raw eta scales with
  y's dimension and units.
- nmse_from_a: held-out NMSE of the affine probe a -> y (0: the action determines y linearly; ~1: y
  says nothing about a), on labelled windows only where the data marks them (`action_is_labeled`).
  A constant target has eta 0 and teaches nothing: relative is n/a for it.
- nmse_given_s: NMSE(y | a, s) = what a adds to the prediction of y beyond the state s
  (`metrics.latent.probe_nmse_given_o`; where the data stores `observation.state`). 1: nothing.

Targets (TARGETS); each needs only the frames, except `action`:
  action      the dataset's `action` at t (one-hot for a discrete index): eta = 0 by construction
  flow        DIS optical flow of (o, o'), area-averaged to 8 x 8 (data/flow.py): the `robust-flow` target
  frame-diff  o' - o, per pixel
  next-frame  o', per pixel: what the FDM of L_LAM reconstructs (Eq. 3)

`--paired-view augment[:color=C,shift=P,switch=Q]` draws the paired view by a colour / camera
augmentation instead (data/augment.py; for video without `KEY_alt`): eta then says how much a target
moves with those changes only.

Writes R/target.json and R/target.md at once (a temporary folder renamed into place); an occupied R
is refused before anything is read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from exolam.data.augment import PairedAugment
from exolam.data.fields import ACTION, camera_key, lam_fields
from exolam.data.flow import DIS_MIN_SIDE, optical_flow
from exolam.data.lerobot import open_dataset
from exolam.data.windows import WindowDataset, collate
from exolam.errors import ConfigError, check_positive_int
from exolam.metrics.encoder import target_robustness
from exolam.metrics.latent import probe_nmse, probe_nmse_given_o
from exolam.runs.files import atomic_dir, finite_json, fresh_out
from exolam.runs.outdir import claim
from exolam.workflows.diagnose import STATE, resized_shape, select_windows
from exolam.workflows.diagnose_report import short_num

TARGETS = ("action", "flow", "frame-diff", "next-frame")
PLAIN = "lower relative eta = predicting y pulls z closer to consistency across exogenous states (Prop. 4.8)"


def _as_features(a: torch.Tensor) -> torch.Tensor:
    """Actions as regressors/targets [B, d]: a discrete index [B] becomes one-hot, anything else flat float."""
    if a.dim() == 1 and not a.dtype.is_floating_point:
        if len(a) and int(a.min()) < 0:
            raise ConfigError(f"'{ACTION}' holds the index {int(a.min())} in a labelled window; a discrete action "
                              "must be >= 0 (mark unlabelled frames with action_is_labeled = False)")
        return F.one_hot(a.long(), int(a.max()) + 1 if len(a) else 1).float()
    return a.reshape(len(a), -1).float()


def target_pair(name: str, batch, a: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y(o, o'), y(o~, o~')) [B, d_y] of target `name` on a batch with the paired views; for `action`,
    `a` (the labelled windows' actions as features) on those windows only."""
    if name == "action":
        return a, a  # the action of a transition is the same whatever the exogenous state
    if name == "flow":
        return optical_flow(batch.o, batch.o_next).flatten(1), optical_flow(batch.o_alt, batch.o_next_alt).flatten(1)
    if name == "frame-diff":
        return (batch.o_next - batch.o).flatten(1), (batch.o_next_alt - batch.o_alt).flatten(1)
    return batch.o_next.flatten(1), batch.o_next_alt.flatten(1)  # next-frame


def measure(name: str, batch, lab: torch.Tensor, a: torch.Tensor | None, s: torch.Tensor | None,
            n_train: int) -> dict:
    """eta (Def. 4.7) of one target; probes of y from a (and s) on the labelled windows `lab` (batch rows,
    ascending), fitted on those among the first n_train rows and scored on the rest. a, s: features of
    the windows `lab` (None where the data has none)."""
    y, y_alt = target_pair(name, batch, a)
    y_lab = y if name == "action" else y[lab]
    tr = lab < n_train
    row = {"target": name, "dim": int(y.shape[1]), "windows": len(y), "eta": target_robustness(y, y_alt),
           "probe_windows": [int(tr.sum()), int((~tr).sum())], "nmse_from_a": None, "nmse_given_s": None}
    if a is not None and tr.any() and (~tr).any():
        row["nmse_from_a"] = probe_nmse(a[tr], y_lab[tr], a[~tr], y_lab[~tr])
        if s is not None:
            row["nmse_given_s"] = probe_nmse_given_o(a[tr], s[tr], y_lab[tr], a[~tr], s[~tr], y_lab[~tr])
    return row


def diagnose_target(targets, data_root, out_dir, camera: str | None = None, *, image_size: int | None = None,
                    frame_gap: int = 1, max_windows: int = 1024, seed: int = 0, paired_view: PairedAugment | None = None
                    ) -> dict:
    """Measure eta and the action probes of each target in `targets`; write R/target.{json,md}; return the dict.
    paired_view: draw o~, o~' by augmentation (data/augment.py) instead of reading `<camera>_alt`."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    for t in targets:
        if t not in TARGETS:
            raise ConfigError(f"--target = {t!r} is not one of: {', '.join(TARGETS)}")
    if not targets or len(set(targets)) != len(targets):
        raise ConfigError(f"--target: give each target once (got {targets})")
    check_positive_int("--max-windows", max_windows)
    out = fresh_out(out_dir)
    ds = open_dataset(data_root)
    camera = camera_key(ds, camera)
    # the action is the probes' regressor whatever the targets (with its label mask, if stored); the
    # `action` target on data without one is refused here
    fields = lam_fields(ds, camera, paired=paired_view is None,
                        action="action" in targets or ACTION in ds.numeric_keys, what="diagnose target")
    side = min(resized_shape(ds, camera, image_size)[1:])
    if "flow" in targets and side < DIS_MIN_SIDE:
        raise ConfigError(f"--target flow: DIS flow needs frames >= {DIS_MIN_SIDE} px a side, but '{camera}' of "
                          f"{ds.root} gives {side} px (resize with --image-size)")
    if STATE in ds.numeric_keys:
        fields["s"] = STATE
    with claim(out, {"--data": ds.root}):
        fresh_out(out)  # again under the lock: a process that held it may have written it meanwhile
        wd = WindowDataset(ds, fields, frame_gap=frame_gap, image_size=image_size, paired_view=paired_view)
        train, test, split = select_windows(wd, max_windows, 0.5, seed)
        idx = train + test
        batch = collate([wd[i] for i in idx])
        lab = torch.arange(len(idx)) if batch.label_mask is None else torch.nonzero(batch.label_mask.bool()).squeeze(1)
        a = None if batch.a is None else _as_features(batch.a[lab])
        s = None if batch.s is None else batch.s[lab].reshape(len(lab), -1).float()
        rows = [measure(t, batch, lab, a, s, len(train)) for t in targets]
        rel = [r["eta"]["relative"] for r in rows]
        ranking = [rows[i]["target"] for i in sorted(range(len(rows)), key=lambda i: (math.isnan(rel[i]), rel[i]))]
        alt = fields["o_alt"] if paired_view is None else paired_view.spec()
        result = {"data": {"root": str(ds.root.absolute()), "camera": camera, "alt": alt,
                           "image_size": image_size,
                           "frame_gap": frame_gap, "windows": len(idx), "probe_split": split,
                           "frame_shape": list(batch.o.shape[1:]), "state": STATE if "s" in fields else None},
                  "targets": rows, "ranking": ranking, "meaning": PLAIN}

        def build(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            (tmp / "target.md").write_text(markdown(result))
            (tmp / "target.json").write_text(json.dumps(finite_json(result), indent=2) + "\n")

        atomic_dir(out, build)
    return result


def markdown(result: dict) -> str:
    """The short report: one row per target, most robust (lowest relative eta) first."""
    d = result["data"]
    lines = ["# Prediction-target robustness (Def. 4.7, Prop. 4.8)", "",
             f"Data: `{d['root']}`, camera `{d['camera']}` paired with `{d['alt']}`, {d['windows']} windows "
             f"(o_t, o_t+{d['frame_gap']}), frames {'x'.join(map(str, d['frame_shape']))}; probes split "
             f"{d['probe_split']}.", "", f"**{PLAIN}.**", "",
             "| rank | target | dims | windows (eta; probe train + test) | relative eta | chance level | "
             "eta mean | eta max (sample sup) | NMSE(y from a) | NMSE(y given a, s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    by_name = {r["target"]: r for r in result["targets"]}
    for i, name in enumerate(result["ranking"], 1):
        r = by_name[name]
        e = r["eta"]
        lines.append(f"| {i} | `{name}` | {r['dim']} | {r['windows']}; {'+'.join(map(str, r['probe_windows']))} | "
                     f"{short_num(e['relative'])} | {short_num(e['independent'])} | {short_num(e['mean'])} | {short_num(e['max'])} | "
                     f"{short_num(r['nmse_from_a'])} | {short_num(r['nmse_given_s'])} |")
    lines += ["", "relative eta = E||y(o, o') - y(o~, o~')||^2 / E||y - E y||^2 over paired windows: 0 = y ignores "
              "the exogenous state, ~2 = y~ independent of y; chance level = the relative eta of a y~ independent of y "
              "with the paired view's own spread and mean (above 2 when that view spreads y wider). NMSE(y from a): held-out affine probe a -> y (0: the "
              "action determines y; ~1: y says nothing about it). NMSE(y given a, s): what a adds beyond the "
              "state (1: nothing; n/a without `observation.state`). A good L_xi-robust target has both a low "
              "relative eta and a low NMSE.", ""]
    return "\n".join(lines)
