"""`exolam diagnose`: how much exogenous noise leaked into a trained LAM, measured on a LeRobot dataset.

`diagnose(model, dataset_root, out_dir)` takes ANY object with `encode(o, o_next) -> z` and
`decode(o, z) -> o_next_hat` (an exolam checkpoint, or `workflows.adapter.LAMAdapter` around someone
else's model) and writes `out_dir/report.md` (figures beside it) and `out_dir/diagnose.json`, all at
once (a temporary folder renamed into place). Every section is measured only where the data allows
it; otherwise the JSON holds {"measured": false, "reason": ...} and the report says so.

Sections (held-out = windows of episodes the probes never saw, split by episode):
- probe:       NMSE of a linear probe z -> a and the gauge-free NMSE(a | z, o) (docs/design.md metrics
               table; Sec. 4), o = `observation.state` if present, else the frame pooled to <= 256 dims
- paired:      with `CAMERA_alt`: `z_consistency` relative (0: z is the same under both exogenous
               states, 2: independent), the VQ code-flip rate, the xi'-swap test (`swap_psnr`,
               Sec. 4.2, Fig. 2b: gap_swap in dB)
- latent:      VQ codebook usage (codes never selected on the data receive no gradient; collapse)
               or, for continuous z, per-dim std and participation ratio (effective dimensions)
- fdm_uses_z:  FDM error with z permuted across the batch / with z intact (~1: the FDM ignores z)
- z_uses_next: o' replaced by o_{t+m} (m != k) of the same episode; change of z relative to its
               spread (~0: z ignores o', the off-by-one jasmine / jafar reported)
- saliency:    |d||z|| / d pixels| of o and o', summed over channels (Fig. 3 left; z before the
               bottleneck, z_pre, where the LAM has `idm`: a quantized z is piecewise constant), and
               the share on the exogenous region where the data says where it is

Verdict (`verdict`), from the paired-view evidence only, thresholds fixed in advance (THRESHOLDS):
r = consistency relative = 2 Var_xi(z | s, s') / Var(z) for independent paired draws, so r = 0.5
means a quarter of z's variance follows the exogenous state, r = 0.1 a twentieth; g = gap_swap -
max(gap_aug, 0), the dB lost when only xi' changes beyond the augmentation's own shift (the paper's
LAPA measurement: 7.3 dB against 1.4 dB). yes if r >= 0.5 or g >= 1 dB (1 dB = 26 % more error);
no if r <= 0.1 and g < 0.3 dB; partly otherwise. Without paired views: undecided.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from exolam.data.augment import PairedAugment
from exolam.data.fields import ACTION, LABEL, alt_key, camera_key
from exolam.data.lerobot import LeRobotDataset, open_dataset
from exolam.data.windows import WindowDataset, collate
from exolam.errors import ConfigError, check_positive_int
from exolam.metrics.encoder import derangement, z_consistency
from exolam.metrics.latent import probe_nmse, probe_nmse_given_o
from exolam.metrics.pixel import (codebook_usage, consistency_loss, evaluating, probe_accuracy, swap_psnr)
from exolam.runs.files import atomic_dir, fresh_out
from exolam.runs.outdir import claim

THRESHOLDS = {"consistency_yes": 0.5, "consistency_no": 0.1, "swap_yes_db": 1.0, "swap_no_db": 0.3,
              "fdm_ignores_z_ratio": 1.1, "z_ignores_next": 0.05, "collapse_perplexity": 1.5}
STATE, O_DIMS, MIN_TRAIN, MIN_TEST = "observation.state", 256, 10, 5
ADVICE = ("Train longer, use a larger --frame-gap (frames k steps apart differ more), or check the bottleneck, then "
          "diagnose again.")


def _skip(reason: str) -> dict:  # a section the data does not allow, and why
    return {"measured": False, "reason": reason}


def resized_shape(ds: LeRobotDataset, camera: str, image_size: int | None) -> tuple[int, int, int]:
    """(C, H, W) the LAM will see of `camera` (video resized to image_size when given)."""
    if camera in ds.video_keys:
        h, w, c = ds.video_shapes[camera]
        return (c, image_size, image_size) if image_size else (c, h, w)
    return tuple(int(d) for d in ds.features[camera]["shape"])


def model_shape(model) -> tuple[int, int, int] | None:
    """(C, H, W) a LAM reads, from an adapter's `frame_shape` or its config (VQLAM, LapoLAM); else None."""
    shape = getattr(model, "frame_shape", None)
    cfg = getattr(model, "cfg", None)
    if shape is None and hasattr(cfg, "in_channels") and hasattr(cfg, "image_size"):  # VQLAM, LapoLAM (its input,
        shape = (cfg.in_channels, cfg.image_size, cfg.image_size)  # not obs_shape: that is f's feature map for "ema")
    return None if shape is None else tuple(int(d) for d in shape)


def select_windows(wd: WindowDataset, max_windows: int, test_fraction: float, seed: int):
    """Up to max_windows windows drawn uniformly; (train, test) index lists split by episode."""
    g = torch.Generator().manual_seed(seed)
    idx = sorted(torch.randperm(len(wd), generator=g)[:max_windows].tolist())
    eps = sorted({wd.window(i)[0] for i in idx})
    if len(eps) < 2:  # one episode: hold out its last windows in time instead
        cut = max(1, round(len(idx) * (1 - test_fraction)))
        return idx[:cut], idx[cut:], "one episode: split by time (last windows held out)"
    perm = torch.randperm(len(eps), generator=g).tolist()
    test_eps = {eps[p] for p in perm[:max(1, round(len(eps) * test_fraction))]}
    train = [i for i in idx if wd.window(i)[0] not in test_eps]
    return train, [i for i in idx if wd.window(i)[0] in test_eps], f"by episode ({len(test_eps)} of {len(eps)} held out)"


def _frame(ds: LeRobotDataset, key: str, episode: int, t: int, image_size: int | None) -> torch.Tensor:
    """Frame t of an episode as float [C, H, W] (as data/windows.py reads it)."""
    if key in ds.video_keys:
        x = torch.from_numpy(ds.frames_at(key, episode, [t])).permute(0, 3, 1, 2).float().div_(255)
        if image_size and x.shape[-2:] != (image_size, image_size):
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        return x[0]
    return torch.tensor(ds.column(key, episode)[t]).float()


def _chunked(fn, *xs, chunk: int = 256) -> torch.Tensor:
    return torch.cat([fn(*(x[i:i + chunk] for x in xs)).detach().float() for i in range(0, len(xs[0]), chunk)])


def _o_features(batch, has_state: bool) -> tuple[torch.Tensor, str]:
    """o for NMSE(a | z, o): observation.state, or the frame average-pooled to at most 256 dims."""
    if has_state:
        return batch.s.reshape(len(batch.s), -1).float(), STATE
    c, h, w = batch.o.shape[1:]
    side = max(1, min(h, w, int(math.sqrt(O_DIMS / c))))
    pooled = F.adaptive_avg_pool2d(batch.o.float(), (min(side, h), min(side, w)))
    return pooled.flatten(1), f"frame pooled to {tuple(pooled.shape[1:])}"


def probe_section(z, batch, train, test, has_state: bool) -> dict:
    """Held-out probe NMSE z -> a and NMSE(a | z, o), on labelled windows only (docs/design.md metrics)."""
    if batch.a is None:
        return _skip(f"the data has no '{ACTION}' feature (action-free video)")
    keep = torch.ones(len(z), dtype=torch.bool) if batch.label_mask is None else batch.label_mask.bool().reshape(-1)
    tr, te = [i for i in train if keep[i]], [i for i in test if keep[i]]
    if len(tr) < MIN_TRAIN or len(te) < MIN_TEST:
        return _skip(f"too few labelled windows ({len(tr)} train, {len(te)} held-out; need {MIN_TRAIN} and "
                     f"{MIN_TEST}): label more frames ('{LABEL}') or raise --max-windows")
    a = batch.a
    discrete = not a.is_floating_point()
    if discrete:
        n_classes = int(a.max()) + 1
        a = F.one_hot(a.long().reshape(-1), n_classes).double()
    a = a.reshape(len(a), -1).double()
    o, o_name = _o_features(batch, has_state)
    # columns constant on the train split carry nothing a probe can fit; least_squares would scale them by
    # 1 / 1e-300 and blow up on a held-out window where they are not constant (a cell unseen in training)
    z, o = (x[:, x[tr].double().std(0) > 0] if len(tr) > 1 else x for x in (z, o))
    out = {"measured": True, "n_train": len(tr), "n_test": len(te), "discrete_actions": discrete,
           "probe_nmse": probe_nmse(z[tr], a[tr], z[te], a[te]), "o_features": o_name}
    if discrete:
        out["probe_accuracy"] = probe_accuracy(z[tr], batch.a.reshape(-1)[tr], z[te], batch.a.reshape(-1)[te], n_classes)
    out["probe_nmse_o_only"] = probe_nmse(o[tr], a[tr], o[te], a[te])
    out["probe_nmse_given_o"] = math.nan
    if len(tr) <= z.shape[1] + o.shape[1] + 1:
        out["given_o_reason"] = f"needs more than {z.shape[1] + o.shape[1] + 1} labelled train windows"
    elif out["probe_nmse_o_only"] < 1e-3:  # 0 / 0: the policy is a function of o, nothing is left for z
        out["given_o_reason"] = "o alone predicts a here (NMSE < 1e-3), so z has nothing left to add"
    else:
        out["probe_nmse_given_o"] = probe_nmse_given_o(z[tr], o[tr], a[tr], z[te], o[te], a[te])
    return out


def paired_section(model, batch, pixel_decode: bool) -> dict:
    """Consistency across paired views and the xi'-swap test (Sec. 4.2; Fig. 5b left)."""
    if batch.o_alt is None:
        return _skip("the data has no paired view (a feature named `<camera>_alt`, e.g. `observation.image_alt`: the "
                     "same state rendered under another exogenous state), which users' own video lacks; "
                     "`--paired-view augment` draws one by a colour / camera augmentation")
    same = ((batch.o_alt == batch.o).flatten(1).all(1) & (batch.o_next_alt == batch.o_next).flatten(1).all(1))
    zc = z_consistency(model, batch)
    if math.isnan(zc["relative"]) and zc["mse"] == 0:
        zc["relative"] = 0.0  # z constant and identical on both views: nothing moves with xi
    out = {"measured": True, "identical_views": float(same.double().mean()), "consistency_relative": zc["relative"],
           "consistency_mse": zc["mse"], "code_flip_rate": math.nan}
    if hasattr(model, "idm"):
        out["code_flip_rate"] = consistency_loss(model, batch)["flip_rate"]
    if pixel_decode:
        out.update({f"swap_{k}": v for k, v in swap_psnr(model, batch).items()})
    else:
        out["swap_reason"] = "decode(o, z) does not return a frame shaped like o (e.g. an FDM in feature space)"
    return out


def latent_section(z, codes, K: int | None) -> dict:
    """VQ codebook usage, or spread / effective dimensions of a continuous z (collapse checks)."""
    if codes is not None:
        K = K or int(codes.max()) + 1
        use = codebook_usage(codes, K)
        counts = torch.bincount(codes.long().flatten(), minlength=K)
        return {"measured": True, "kind": "vq", "K": K, "used": use["used"], "perplexity": use["perplexity"],
                "counts": counts.tolist(), "never_selected": [k for k in range(K) if counts[k] == 0],
                "collapsed": use["perplexity"] < THRESHOLDS["collapse_perplexity"]}
    zc = (z - z.mean(0)).double()
    std = zc.pow(2).mean(0).sqrt()
    ev = torch.linalg.eigvalsh(zc.T @ zc / max(1, len(zc) - 1)).clamp_min(0)
    total = float(ev.sum())
    pr = total**2 / float(ev.pow(2).sum()) if total > 0 else 0.0
    p = ev[ev > 0] / total if total > 0 else ev[:0]
    return {"measured": True, "kind": "continuous", "d_z": z.shape[1], "std": std.tolist(), "participation_ratio": pr,
            "effective_rank": float(torch.exp(-(p * p.log()).sum())) if total > 0 else 0.0,
            "dead_dims": int((std <= 1e-3 * float(std.max().clamp_min(1e-30))).sum()) if total > 0 else z.shape[1],
            "collapsed": pr < THRESHOLDS["collapse_perplexity"]}


def fdm_section(model, batch, z) -> dict:
    """FDM error with z permuted across the batch over the error with z intact (~1: the FDM ignores z)."""
    target = model.fdm_target(batch.o_next) if hasattr(model, "fdm_target") else batch.o_next
    if len(z) < 2:
        return _skip("needs at least two windows")
    pi = derangement(len(z))
    moved = (z - z[pi]).abs().flatten(1).amax(1) > 0
    if not moved.any():
        return _skip("z is the same for every window, so there is nothing for the FDM to use")
    o, t, zi, zp = batch.o[moved], target[moved], z[moved], z[pi][moved]
    with evaluating(model):
        pred = _chunked(model.decode, o, zi)
        if pred.shape != t.shape:
            return _skip(f"decode(o, z) returns {tuple(pred.shape[1:])}, its target is {tuple(t.shape[1:])}")
        perm = _chunked(model.decode, o, zp)
    intact, permuted = float((pred - t).pow(2).mean()), float((perm - t).pow(2).mean())
    ratio = permuted / intact if intact > 0 else (math.inf if permuted > 0 else 1.0)
    return {"measured": True, "mse_intact": intact, "mse_permuted": permuted, "ratio": ratio,
            "share_z_differs": float(moved.double().mean()), "flag": ratio < THRESHOLDS["fdm_ignores_z_ratio"]}


def next_section(model, batch, z, o_other, m_used) -> dict:
    """E||z(o, o_{t+m}) - z(o, o_{t+k})||^2 / E||z - mean z||^2 (~0: z does not read o')."""
    changed = (o_other != batch.o_next).flatten(1).any(1)
    if not changed.any():
        return _skip("o_{t+m} equals o' in every window (static video?)")
    with evaluating(model):
        z_other = _chunked(model.encode, batch.o[changed], o_other[changed])
    spread = float((z - z.mean(0)).pow(2).sum(1).mean())
    move = float((z_other - z[changed]).pow(2).sum(1).mean())
    rel = move / spread if spread > 0 else (0.0 if move == 0 else math.inf)
    return {"measured": True, "relative_change": rel, "offsets_m": sorted(set(m_used)),
            "n": int(changed.sum()), "flag": rel < THRESHOLDS["z_ignores_next"]}


def exo_masks(ds: LeRobotDataset, camera: str, batch) -> tuple[torch.Tensor | None, torch.Tensor | None, str]:
    """Exogenous pixels [B, H, W] of o and o': the camera's declared `info.exogenous_region` (the grid
    world's export declares its bottom row), or where the paired view differs."""
    region = (ds.features.get(camera, {}).get("info") or {}).get("exogenous_region")
    if region is not None and tuple(torch.tensor(region).shape) == tuple(batch.o.shape[-2:]):
        m = torch.tensor(region, dtype=torch.bool)  # where the data's writer knows it (the grid world's export)
        m = m.expand(len(batch.o), *m.shape)
        return m, m, f"the region '{camera}' declares exogenous (info.exogenous_region)"
    if batch.o_alt is not None:
        mo, mn = (batch.o_alt != batch.o).any(1), (batch.o_next_alt != batch.o_next).any(1)
        if mo.any() or mn.any():
            return mo, mn, "pixels where the paired view differs from the data"
    return None, None, "the data does not say where the exogenous region is (no paired view, or it never differs)"


def saliency_section(model, ds, camera: str, batch, n_windows: int = 64) -> tuple[dict, dict | None]:
    """|d||z|| / d o| and |d||z|| / d o'| summed over channels (Fig. 3 left); exogenous share where known."""
    b = batch.index(slice(0, n_windows))
    o, on = b.o.clone().float().requires_grad_(True), b.o_next.clone().float().requires_grad_(True)
    with evaluating(model), torch.enable_grad():  # z_pre: a quantized z is piecewise constant in the pixels
        idm = model.idm(o, on) if hasattr(model, "idm") else None
        z = idm.z_pre if idm is not None else model.encode(o, on)
        if z.requires_grad:
            z.float().flatten(1).norm(dim=1).sum().backward()
    if o.grad is None and on.grad is None:
        return _skip("encode(o, o') is not differentiable here (no gradient reaches the pixels)"), None
    sal_o, sal_n = ((x.grad if x.grad is not None else torch.zeros_like(x)).abs().sum(1) for x in (o, on))  # [B, H, W]
    out = {"measured": True, "n": len(o), "share_on_o_next": float(sal_n.sum() / (sal_o.sum() + sal_n.sum()).clamp_min(1e-30))}
    mo, mn, where = exo_masks(ds, camera, b)
    out["exo_region"] = where
    if mo is not None:
        for name, sal, m in (("o", sal_o, mo), ("o_next", sal_n, mn)):
            tot = sal.flatten(1).sum(1)
            ok = (tot > 0) & m.flatten(1).any(1)
            share = (sal * m).flatten(1).sum(1)[ok] / tot[ok]
            out[f"exo_share_{name}"] = float(share.mean()) if ok.any() else math.nan
            out[f"exo_area_{name}"] = float(m.flatten(1).double().mean(1)[ok].mean()) if ok.any() else math.nan
    maps = {"o": b.o, "o_next": b.o_next, "sal_o": sal_o.detach(), "sal_o_next": sal_n.detach(),
            "quantized": idm is not None and idm.codes is not None}
    return out, maps


def verdict(paired: dict, fdm: dict | None = None, nxt: dict | None = None) -> dict:
    """Does this LAM encode exogenous content? From paired views only, with THRESHOLDS (module doc); but
    first, a LAM whose FDM ignores z or whose z ignores o' is 'degenerate': it learned no latent action,
    so what its z encodes is moot (its z still moves with the pixels, xi included, and would read 'yes')."""
    T = THRESHOLDS
    broken = [what for sec, what in ((fdm, "the FDM ignores z"), (nxt, "z ignores o'")) if sec and sec.get("flag")]
    if broken:
        return {"answer": "degenerate", "r": paired.get("consistency_relative"),
                "text": f"This LAM learned no latent action: {' and '.join(broken)} (see below), so whether z encodes "
                "exogenous content is moot. " + ADVICE}
    if not paired.get("measured"):
        return {"answer": "undecided", "text": "Cannot be decided from this data: it has no paired views "
                "(`<camera>_alt`). Look at the saliency maps (does z read the background or distractors?) and run "
                "`exolam diagnose encoder` for the xi-sensitivity of the encoder (Sec. 4.3, Remark 4.3)."}
    r = paired["consistency_relative"]
    gap = paired.get("swap_gap_swap", math.nan)
    g = gap - max(paired.get("swap_gap_aug", 0.0), 0.0) if math.isfinite(gap) else math.nan
    facts = f"consistency relative r = {r:.3f}" + (f", xi'-swap gap g = {g:.2f} dB" if math.isfinite(g) else "")
    if paired["identical_views"] >= 1.0:
        return {"answer": "no", "r": r, "g": g, "text": f"No exogenous content found ({facts}), but the paired views "
                "equal the data in every window: nothing exogenous varies in this data, so there was nothing to "
                "encode. The verdict says nothing about data with exogenous noise."}
    if (math.isfinite(r) and r >= T["consistency_yes"]) or (math.isfinite(g) and g >= T["swap_yes_db"]):
        return {"answer": "yes", "r": r, "g": g, "text": f"Yes: this LAM encodes exogenous content ({facts}; "
                f"thresholds r >= {T['consistency_yes']} or g >= {T['swap_yes_db']} dB). z changes with the "
                "exogenous state at a fixed transition, the future leakage of Prop. 4.2."}
    if math.isfinite(r) and r <= T["consistency_no"] and not (math.isfinite(g) and g >= T["swap_no_db"]):
        return {"answer": "no", "r": r, "g": g, "text": f"No: z is consistent across exogenous states ({facts}; "
                f"thresholds r <= {T['consistency_no']} and g < {T['swap_no_db']} dB)."}
    return {"answer": "partly", "r": r, "g": g, "text": f"Partly: some exogenous content leaks into z ({facts}; "
            f"between the 'no' bounds r <= {T['consistency_no']}, g < {T['swap_no_db']} dB and the 'yes' bounds "
            f"r >= {T['consistency_yes']} or g >= {T['swap_yes_db']} dB)."}


def diagnose(model, dataset_root, out_dir, camera: str | None = None, *, max_windows: int = 1024, frame_gap: int = 1,
             image_size: int | None = None, test_fraction: float = 0.2, seed: int = 0, name: str | None = None,
             paired_view: PairedAugment | None = None, log=print) -> dict:
    """Diagnose `model` on the LeRobot dataset at `dataset_root`; write out_dir/{report.md, diagnose.json, *.png}.

    lam: anything with encode(o, o_next) -> z [B, d_z] and decode(o, z) (models/base.py protocol, or
    `workflows.adapter.LAMAdapter`); optional `idm` (codes, code-flip rate), `fdm_target`, `cfg` / `frame_shape`
    (checked against the data's frames). paired_view: draw the paired view by augmentation
    (data/augment.py) instead of reading `<camera>_alt`. Returns the dict written to diagnose.json.
    """
    from exolam.workflows.diagnose_report import write_report

    check_positive_int("--max-windows", max_windows)
    check_positive_int("--frame-gap", frame_gap)
    out = fresh_out(out_dir)
    ds = open_dataset(dataset_root)
    cam = camera_key(ds, camera)
    have, want = resized_shape(ds, cam, image_size), model_shape(model)
    if want is not None and have != want:
        raise ConfigError(f"{ds.root}: camera '{cam}' gives frames {have} (C, H, W), the LAM expects {want}: "
                          "choose the camera it was trained on (--camera) or a dataset of its image size and channels")
    fields = {"o": cam}
    if paired_view is None and alt_key(cam) in ds.features:
        fields["o_alt"] = alt_key(cam)
    if ACTION in ds.numeric_keys:
        fields["a"] = ACTION
        if LABEL in ds.numeric_keys:
            fields["label_mask"] = LABEL
    if STATE in ds.numeric_keys:
        fields["s"] = STATE  # carried in the `s` slot of Transitions: the o of NMSE(a | z, o)
    wd = WindowDataset(ds, fields, frame_gap=frame_gap, image_size=image_size, paired_view=paired_view)
    with claim(out, {"--data": ds.root}):
        fresh_out(out)  # again under the lock: a process that held it may have written it meanwhile
        results, maps = _measure(model, ds, wd, cam, fields, have, frame_gap, image_size, max_windows, test_fraction,
                                 seed, name, paired_view, log)

        def build(tmp: Path) -> None:  # everything into a temporary sibling, then one rename
            tmp.mkdir(parents=True)
            write_report(tmp, results, maps)

        atomic_dir(out, build)
    log(f"[diagnose] {results['verdict']['text']}")
    return results


def _measure(model, ds, wd, cam, fields, have, frame_gap, image_size, max_windows, test_fraction, seed, name,
             paired_view, log) -> tuple[dict, dict | None]:
    """Every section of the report (module doc) and the saliency maps."""
    train, test, split = select_windows(wd, max_windows, test_fraction, seed)
    idx = train + test
    batch = collate([wd[i] for i in idx])
    tr, te = list(range(len(train))), list(range(len(train), len(idx)))
    log(f"[diagnose] {len(idx)} windows of {ds.root} ('{cam}', k = {frame_gap}); split {split}")
    model = model.float().cpu() if isinstance(model, torch.nn.Module) else model
    with evaluating(model):
        z = _chunked(model.encode, batch.o, batch.o_next).flatten(1)
        codes = None
        if hasattr(model, "idm"):
            outs = [model.idm(batch.o[i:i + 256], batch.o_next[i:i + 256]) for i in range(0, len(idx), 256)]
            codes = None if outs[0].codes is None else torch.cat([x.codes.reshape(-1) for x in outs])
        probe_out = model.decode(batch.o[:2], z[:2])
    if not torch.isfinite(z).all():
        raise ConfigError("the LAM's latent actions hold NaN or inf on this data (did training diverge?)")
    pixel = tuple(probe_out.shape[1:]) == tuple(batch.o.shape[1:])
    K = getattr(getattr(model, "cfg", None), "codebook_size", None) or getattr(model, "codebook_size", None)
    others, m_used = [], []
    for i in idx:
        ep, t = wd.window(i)
        m = 2 * frame_gap if t + 2 * frame_gap < ds.episode_lengths[ep] else 0  # m != k; 0: o' replaced by o
        m_used.append(m)
        others.append(_frame(ds, cam, ep, t + m, image_size))
    paired = paired_section(model, batch, pixel)
    sal, maps = saliency_section(model, ds, cam, batch.index(te + tr))
    results = {
        "lam": name or getattr(model, "name", None) or type(model).__name__, "data": str(ds.root), "camera": cam,
        "frame_gap": frame_gap, "frame_shape": list(have), "n_windows": len(idx), "split": split,
        "paired_view": paired_view.spec() if paired_view is not None else fields.get("o_alt"),
        "thresholds": THRESHOLDS,
        "probe": probe_section(z, batch, tr, te, STATE in fields.values()),
        "paired": paired,
        "latent": latent_section(z, codes, K),
        "fdm_uses_z": fdm_section(model, batch, z),
        "z_uses_next": next_section(model, batch, z, torch.stack(others), m_used),
        "saliency": sal,
    }
    results["verdict"] = verdict(paired, results["fdm_uses_z"], results["z_uses_next"])
    return results, maps

