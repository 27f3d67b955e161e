"""Metrics for pixel LAMs (Sec. 4.2 xi'-swap / Fig. 2b, Sec. 5 / Fig. 5b; docs/design.md metrics table).

Every metric takes a LAM with the protocol of models/base.py and a `Transitions` batch, runs under
torch.no_grad with the LAM in eval mode (its train/eval flags are restored afterwards) and returns
plain Python floats. Views used below, with s, s' shared and the exogenous state differing:

    o = h(s, xi),  o' = h(s', xi')            the data
    o~ = h(s, xi~), o~' = h(s', xi~')         the paired view (`o_alt`, `o_next_alt`)

- `consistency_loss`  E||z - z~||^2 with z = IDM(o, o'), z~ = IDM(o~, o~')   (Fig. 5b, left)
- `region_mse` / `exo_region_mse`  FDM error on a pixel region; on the uncontrollable region it is
  high (up to the noise floor) when z carries nothing about xi'                (Fig. 5b, right)
- `swap_psnr`  Recon., Aug. Recon. and xi'-swap PSNR and their dB gaps          (Sec. 4.2, Fig. 2b)
- `codebook_usage`, `probe_accuracy`  collapse check and linear action probe    (Sec. 4, App. C)
"""

from __future__ import annotations

import contextlib
import math

import torch

from exolam.data.transitions import Transitions
from exolam.errors import ConfigError
from exolam.metrics.latent import fit_linear_probe
from exolam.objectives import sq_err


@contextlib.contextmanager
def evaluating(model):
    """no_grad + eval mode for the duration; restores every submodule's training flag."""
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []
    for m, _ in modes:
        m.train(False)
    try:
        with torch.no_grad():
            yield
    finally:
        for m, was_training in modes:
            m.train(was_training)


def need_alt(batch: Transitions, metric: str) -> None:
    if batch.o_alt is None or batch.o_next_alt is None:
        raise ConfigError(f"{metric} needs paired views o_alt / o_next_alt in the data")


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> float:
    """E ||a - b||^2 (`objectives.sq_err`, in fp32) as a float."""
    return sq_err(a.float(), b.float()).item()


def consistency_loss(model, batch: Transitions) -> dict[str, float]:
    """Latent-action mismatch across exogenous states (Fig. 5b left; cf. Prop. 4.8, Eq. 20).

    post:      E||z - z~||^2 after quantization (the primary number)
    pre:       the same before the bottleneck (z_pre)
    flip_rate: share of samples whose code differs between the two views (NaN without codes)
    """
    need_alt(batch, "consistency_loss")
    with evaluating(model):
        out = model.idm(batch.o, batch.o_next)
        alt = model.idm(batch.o_alt, batch.o_next_alt)
    if out.codes is None or alt.codes is None:
        flip = math.nan
    else:
        flip = (out.codes != alt.codes).float().mean().item()
    return {"post": _sq_dist(out.z, alt.z), "pre": _sq_dist(out.z_pre, alt.z_pre), "flip_rate": flip}


def region_mse(model, batch: Transitions, region: torch.Tensor) -> float:
    """Pixel MSE of FDM(o, IDM(o, o')) against o' over the pixels where `region` ([H, W] bool) is True.

    Mean over the selected pixels, the channels and the batch.
    """
    region = torch.as_tensor(region, dtype=torch.bool, device=batch.o.device)
    if tuple(region.shape) != tuple(batch.o.shape[-2:]):
        raise ConfigError(f"region mask shape {tuple(region.shape)} must equal the frame shape {tuple(batch.o.shape[-2:])}")
    if not region.any():
        raise ConfigError("region mask selects no pixel")
    with evaluating(model):
        pred = model.decode(batch.o, model.encode(batch.o, batch.o_next))
    err = (pred.float() - batch.o_next.float()).pow(2)
    return err[..., region].mean().item()


def exo_region_mse(model, batch: Transitions, region: torch.Tensor, noise_floor: float) -> dict[str, float]:
    """Exogenous-region MSE (Sec. 5, Fig. 5b right): raw, and divided by the noise floor.

    With per-pixel noise variance `noise_floor` (sigma^2/4 in the grid world), normalized = 1.0 means
    the FDM predicts only the mean there, i.e. z carries none of xi'; below 1 means xi' leaked into z.
    NaN when noise_floor is 0 (no exogenous noise to leak).
    """
    raw = region_mse(model, batch, region)
    return {"raw": raw, "normalized": raw / noise_floor if noise_floor > 0 else math.nan}


def psnr(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0) -> float:
    """10 log10(max_val^2 / MSE), MSE over the whole batch; inf when the prediction is exact."""
    mse = (pred.float() - target.float()).pow(2).mean().item()
    return math.inf if mse == 0 else 10.0 * math.log10(max_val**2 / mse)


def swap_psnr(model, batch: Transitions, max_val: float = 1.0) -> dict[str, float]:
    """The xi'-swap test of Sec. 4.2 (Fig. 2b), in dB. Needs only model.encode / model.decode.

    recon              PSNR(FDM(o,  z(o, o')),  o')    Recon.
    aug_recon          PSNR(FDM(o~, z(o~, o~')), o~')  Aug. Recon.
    swap_vs_o_next     PSNR(FDM(o,  z(o, o~')), o')    xi'-swap, scored against o'
    swap_vs_o_next_alt PSNR(FDM(o,  z(o, o~')), o~')   xi'-swap, scored against o~'
    gap_swap     = recon - swap_vs_o_next          (7.3 dB in the paper: z carries xi')
    gap_aug      = recon - aug_recon               (distribution shift of the augmentation alone)
    gap_swap_alt = aug_recon - swap_vs_o_next_alt  (small when the FDM copies xi~' from z)

    If z carried no xi', FDM(o, z(o, o~')) would predict o' (gap_swap ~ 0); a shortcut through z
    makes it resemble o~' instead (gap_swap large, gap_swap_alt ~ gap_aug).
    """
    need_alt(batch, "swap_psnr")
    o, o1, oa, o1a = batch.o, batch.o_next, batch.o_alt, batch.o_next_alt
    with evaluating(model):
        pred = model.decode(o, model.encode(o, o1))
        pred_aug = model.decode(oa, model.encode(oa, o1a))
        pred_swap = model.decode(o, model.encode(o, o1a))
    res = {
        "recon": psnr(pred, o1, max_val),
        "aug_recon": psnr(pred_aug, o1a, max_val),
        "swap_vs_o_next": psnr(pred_swap, o1, max_val),
        "swap_vs_o_next_alt": psnr(pred_swap, o1a, max_val),
    }
    res["gap_swap"] = _gap(res["recon"], res["swap_vs_o_next"])
    res["gap_aug"] = _gap(res["recon"], res["aug_recon"])
    res["gap_swap_alt"] = _gap(res["aug_recon"], res["swap_vs_o_next_alt"])
    return res


def _gap(a: float, b: float) -> float:
    """a - b in dB; 0 when both are +inf (two exact predictions), instead of inf - inf = NaN."""
    return 0.0 if a == b else a - b


def codebook_usage(codes: torch.Tensor, K: int) -> dict[str, float]:
    """Collapse check of a K-code bottleneck: perplexity exp(H(p)) of the code histogram p, codes used.

    perplexity is K for uniform use of all codes and 1 for a collapsed codebook.
    """
    codes = torch.as_tensor(codes).flatten().long()
    if codes.numel() == 0:
        raise ConfigError("codebook_usage needs at least one code")
    if codes.min() < 0 or codes.max() >= K:
        raise ConfigError(f"codebook_usage: codes must lie in [0, {K}), got [{codes.min().item()}, {codes.max().item()}]")
    counts = torch.bincount(codes, minlength=K).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = -(nz * nz.log()).sum().item()
    used = int((counts > 0).sum().item())
    return {"perplexity": math.exp(entropy), "used": used, "fraction": used / K}


def probe_accuracy(z_train: torch.Tensor, a_train: torch.Tensor, z_test: torch.Tensor, a_test: torch.Tensor,
                   n_classes: int) -> float:
    """Linear probe z -> discrete action (Sec. 4 probe protocol, classification form).

    Fits [z, 1] M = one_hot(a) by least squares on the train split (`latent.fit_linear_probe`,
    minimum-norm, so rank-deficient z such as a one-hot code is fine) and returns the accuracy of argmax on
    the held-out split. The probe never sees the test split.
    """
    if z_test.shape[0] != a_test.shape[0] or z_test.shape[0] == 0:
        raise ConfigError("probe_accuracy: the test split needs as many actions as latents, and at least one")
    y = torch.nn.functional.one_hot(a_train.long().cpu(), n_classes).double()
    pred = fit_linear_probe(z_train, y)(z_test).argmax(dim=1)
    return (pred == a_test.long().cpu()).double().mean().item()
