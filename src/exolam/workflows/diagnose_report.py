"""Figures and report.md of `exolam diagnose` (workflows/diagnose.py computes the numbers).

    saliency.png   o, o', |d||z||/d o| and |d||z||/d o'| over the frames (the analogue of the paper's
                   Fig. 3 left: where the latent action looks), for a few held-out windows
    latent.png     VQ code histogram (codes never selected marked), or per-dim std of a continuous z
    swap.png       the xi'-swap test of Sec. 4.2 (Fig. 2b): Recon., Aug. Recon., xi'-swap PSNR
    report.md      the verdict, every section's numbers, and what could not be measured and why
    diagnose.json  the same numbers (NaN / inf written as null)

The caller writes into a temporary folder and renames it into place, so nothing here is atomic itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from exolam.data.augment import NAME as AUGMENT
from exolam.plotting import close, figure
from exolam.runs.files import finite_json

N_SHOW = 4


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def short_num(x) -> str:
    """4 significant digits for the tables of `diagnose encoder` and `diagnose target`; None / NaN -> n/a."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def saliency_figure(maps: dict, path: Path) -> None:
    """Rows: windows spread over the diagnosed sample (labelled by their number in it); columns: o, o',
    saliency on o and on o' over the frame, one colour scale (the colour bar); saliency under 5 % of
    the largest is left out, so a frame z does not read shows as the frame, not darkened."""
    import numpy as np

    rows = np.unique(np.linspace(0, len(maps["o"]) - 1, min(N_SHOW, len(maps["o"]))).round().astype(int))
    fig, axes = figure(len(rows), 4, width=2.4, height=2.4)
    vmax = float(max(maps["sal_o"][rows].max(), maps["sal_o_next"][rows].max())) or 1.0
    shown = None
    for r, w in enumerate(rows):
        for c, (title, img, sal) in enumerate((("o", maps["o"][w], None), ("o'", maps["o_next"][w], None),
                                               ("|d||z||/d o|", maps["o"][w], maps["sal_o"][w]),
                                               ("|d||z||/d o'|", maps["o_next"][w], maps["sal_o_next"][w]))):
            ax = axes[4 * r + c]
            pic = img[-3:].permute(1, 2, 0).clamp(0, 1).numpy()  # a stack of frames: its newest
            ax.imshow(pic[..., 0] if pic.shape[-1] == 1 else pic, cmap="gray", vmin=0, vmax=1)
            if sal is not None:
                shown = ax.imshow(np.ma.masked_less(sal.numpy(), 0.05 * vmax), cmap="inferno", alpha=0.7, vmin=0,
                                  vmax=vmax)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"window {int(w)}", fontsize=8)
    what = "||z_pre|| (before quantization)" if maps.get("quantized") else "||z||"
    fig.suptitle(f"saliency of {what}, one colour scale (cf. paper Fig. 3 left)", fontsize=9)
    fig.tight_layout()
    if shown is not None:
        fig.colorbar(shown, ax=list(axes), fraction=0.02, pad=0.01, label="|d||z|| / d pixel|")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    close(fig)


def latent_figure(lat: dict, path: Path) -> None:
    fig, (ax,) = figure(1, 1)
    if lat["kind"] == "vq":
        colors = ["tab:red" if c == 0 else "tab:blue" for c in lat["counts"]]
        ax.bar(range(lat["K"]), lat["counts"], color=colors)
        ax.set_xlabel("code (red: never selected, receives no gradient)")
        ax.set_ylabel("windows")
        ax.set_title(f"codebook usage: {lat['used']}/{lat['K']} used, perplexity {lat['perplexity']:.2f}", fontsize=9)
    else:
        ax.bar(range(len(lat["std"])), lat["std"])
        ax.set_xlabel("z dimension")
        ax.set_ylabel("std over windows")
        ax.set_title(f"z spread: participation ratio {lat['participation_ratio']:.2f} of {lat['d_z']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    close(fig)


def swap_figure(p: dict, path: Path) -> None:
    fig, (ax,) = figure(1, 1, width=5.0)
    names = ["Recon.", "Aug. Recon.", "xi'-swap vs o'", "xi'-swap vs o~'"]
    vals = [p[f"swap_{k}"] for k in ("recon", "aug_recon", "swap_vs_o_next", "swap_vs_o_next_alt")]
    vals = [v if math.isfinite(v) else 99.0 for v in vals]  # an exact prediction (inf dB) is drawn capped
    ax.bar(names, vals, color=["tab:gray", "tab:gray", "tab:red", "tab:orange"])
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"xi'-swap test (Sec. 4.2): gap_swap {p['swap_gap_swap']:.2f} dB, gap_aug {p['swap_gap_aug']:.2f} dB",
                 fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    close(fig)


def _not(sec: dict) -> str:
    return f"*Not measured:* {sec['reason']}.\n"


def markdown(res: dict, figs: list[str]) -> str:
    T, v = res["thresholds"], res["verdict"]
    L = [f"# exolam diagnose: {res['lam']}", "",
         f"Data `{res['data']}`, camera `{res['camera']}`, frame gap k = {res['frame_gap']}, frames "
         f"{tuple(res['frame_shape'])}, {res['n_windows']} windows, train/test split {res['split']}.", "",
         "## Verdict: does this LAM encode exogenous content?", "", f"**{v['answer']}** - {v['text']}", "",
         f"Rule (fixed in advance, workflows/diagnose.py): yes if consistency relative r >= {T['consistency_yes']} or "
         f"xi'-swap gap g = gap_swap - max(gap_aug, 0) >= {T['swap_yes_db']} dB; no if r <= {T['consistency_no']} "
         f"and g < {T['swap_no_db']} dB; partly otherwise; undecided without paired views; degenerate (checked "
         f"first) if the FDM ignores z or z ignores o' (flags below). r = 2 Var_xi(z)/Var(z) "
         "for independent paired draws: r = 0.5 means a quarter of z's variance follows the exogenous state.", ""]
    p = res["paired"]
    L += ["## Paired views: consistency and the xi'-swap test (Sec. 4.2, Fig. 2b; Fig. 5b left)", ""]
    if p["measured"]:
        L += [f"- paired view: {'`' + res['paired_view'] + '`' if res.get('paired_view') else 'n/a'}"
              + (" (drawn by augmentation, data/augment.py: it tests colour and framing changes only)"
                 if str(res.get("paired_view", "")).startswith(AUGMENT) else " (recorded in the dataset)"),
              f"- consistency relative E||z - z~||^2 / E||z - mean z||^2: {_f(p['consistency_relative'])} "
              f"(0: same z under both exogenous states; 2: independent)",
              f"- code-flip rate: {_f(p['code_flip_rate'])}; windows whose paired view equals the data: "
              f"{_f(p['identical_views'])}"]
        if "swap_recon" in p:
            L += [f"- PSNR Recon. {_f(p['swap_recon'], 2)} dB, Aug. Recon. {_f(p['swap_aug_recon'], 2)} dB, "
                  f"xi'-swap vs o' {_f(p['swap_swap_vs_o_next'], 2)} dB, vs o~' {_f(p['swap_swap_vs_o_next_alt'], 2)} dB",
                  f"- gap_swap {_f(p['swap_gap_swap'], 2)} dB (paper, LAPA on Bridge: 7.3 dB), gap_aug "
                  f"{_f(p['swap_gap_aug'], 2)} dB (paper: 1.4 dB)"]
        else:
            L += [f"- xi'-swap test not measured: {p['swap_reason']}."]
    else:
        L += [_not(p)]
    pr = res["probe"]
    L += ["", "## Action probes (held-out episodes)", ""]
    if pr["measured"]:
        L += [f"- probe NMSE z -> a: {_f(pr['probe_nmse'])} (0: z determines a linearly; ~1: nothing)"
              + (f"; accuracy {_f(pr['probe_accuracy'])}" if "probe_accuracy" in pr else ""),
              f"- probe NMSE o -> a (o alone): {_f(pr['probe_nmse_o_only'])}",
              f"- NMSE(a | z, o), o = {pr['o_features']}: {_f(pr['probe_nmse_given_o'])} (1: z adds nothing "
              "beyond o; gauge-free)" + (f" - {pr['given_o_reason']}" if "given_o_reason" in pr else ""),
              f"- {pr['n_train']} train / {pr['n_test']} held-out labelled windows"]
    else:
        L += [_not(pr)]
    lat = res["latent"]
    L += ["", "## Latent usage (collapse check)", ""]
    if lat["kind"] == "vq":
        L += [f"- {lat['used']} of {lat['K']} codes used, perplexity {_f(lat['perplexity'], 2)}; never selected "
              f"(no gradient reaches them): {lat['never_selected'] or 'none'}",
              f"- collapse (perplexity < {T['collapse_perplexity']}): **{'YES' if lat['collapsed'] else 'no'}**"]
    else:
        L += [f"- participation ratio {_f(lat['participation_ratio'], 2)}, effective rank "
              f"{_f(lat['effective_rank'], 2)} of d_z = {lat['d_z']}; dims with ~0 spread: {lat['dead_dims']}",
              f"- collapse (participation ratio < {T['collapse_perplexity']}): **{'YES' if lat['collapsed'] else 'no'}**"]
    fd, nx = res["fdm_uses_z"], res["z_uses_next"]
    L += ["", "## Does the FDM use z? Does z read the future frame?", ""]
    flag_fdm = "FLAG: the FDM ignores z" if fd.get("flag") else "the FDM uses z"
    flag_next = "FLAG: z ignores o'" if nx.get("flag") else "z reads o'"
    L += [f"- FDM error with z permuted / intact: {_f(fd['ratio'])} (MSE {_f(fd['mse_permuted'], 5)} vs "
          f"{_f(fd['mse_intact'], 5)}); **{flag_fdm}** "
          f"(flag below {T['fdm_ignores_z_ratio']})"] if fd["measured"] else ["- FDM: " + _not(fd)]
    L += [f"- z change when o' is replaced by o_(t+m), m in {nx['offsets_m']}, relative to z's spread: "
          f"{_f(nx['relative_change'])}; **{flag_next}**"
          f" (flag below {T['z_ignores_next']})"] if nx["measured"] else ["- z vs o': " + _not(nx)]
    s = res["saliency"]
    L += ["", "## Saliency (the analogue of Fig. 3 left)", ""]
    if s["measured"]:
        L += [f"- share of |d||z||/d pixels| on o' (vs o): {_f(s['share_on_o_next'])} over {s['n']} held-out windows",
              f"- exogenous region: {s['exo_region']}"]
        if "exo_share_o" in s:
            L += [f"- share of saliency on it: o {_f(s['exo_share_o'])} (area {_f(s['exo_area_o'])}), o' "
                  f"{_f(s['exo_share_o_next'])} (area {_f(s['exo_area_o_next'])}); a share well above the area "
                  "means z looks at exogenous pixels"]
    else:
        L += [_not(s)]
    L += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    L += ["", "Numbers: `diagnose.json`. Paper: \"Why Latent Actions Fail, and How to Prevent It\" (Sec. 4.2, 4.3, 5)."]
    return "\n".join(L) + "\n"


def write_report(folder: Path, res: dict, maps: dict | None) -> None:
    """Figures, report.md and diagnose.json into `folder` (a fresh temporary folder)."""
    folder = Path(folder)
    figs = []
    if maps is not None:
        saliency_figure(maps, folder / "saliency.png")
        figs.append("saliency.png")
    if res["latent"]["measured"]:
        latent_figure(res["latent"], folder / "latent.png")
        figs.append("latent.png")
    if res["paired"]["measured"] and "swap_recon" in res["paired"]:
        swap_figure(res["paired"], folder / "swap.png")
        figs.append("swap.png")
    res["figures"] = figs
    (folder / "report.md").write_text(markdown(res, figs))
    (folder / "diagnose.json").write_text(json.dumps(finite_json(res), indent=2, sort_keys=True) + "\n")
