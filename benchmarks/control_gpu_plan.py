"""App. D at the paper's scale in one ~10-minute run on a lent GPU machine (16 CPU cores), sized by measurement.

    python benchmarks/control_gpu_plan.py --out runs/gpu [--budget 600] [--jobs 16] [--device cuda] [--dry]

1. probe  on the machine itself (~1-2 min): `collect` --jobs episodes x --probe-steps steps (paired renders,
          64 px, h264-lossless) with --jobs processes: collection steps/s, encoding included; on that data,
          at the paper's sizes (`control.Config()`: 64 px, batch 128, LAM 32-64-128-128, policy 32-64-128-128)
          the serial rate of every stage as the experiment runs it (decode in the training process, then one
          update on --device): the five LAM variants, pi(z|o) and pi_Dec (each reading the frozen LAM),
          pi_BC; and env steps/s of the lockstep evaluation with a 64 px conv policy;
2. plan   the episodes E (<= 500 x 1000 steps) whose collection fits --collect-share of the budget; then
          one LAM update count U, with pi(z|o) and BC at 0.4 U and pi_Dec at 0.2 U (the paper preset's
          50k / 20k / 20k / 10k ratios), so that the 5 LAMs, their policies and decoders, bc, bc-all,
          bc-state (one label fraction, 0.1; one seed) and --eval-episodes evaluation episodes of 1000
          steps per policy fit what is left after --overhead seconds;
3. run    `exolam control collect` (--jobs processes), then `exolam reproduce control --device ... --data`
          with those sizes: the exact commands are printed and written to OUT/plan.json first; --dry
          stops there.

Read the plan as a projection from rates measured seconds before on the same machine: the probe's
batches are the first ones of a short dataset, and probes, checkpoints and the report add time that the
--overhead allowance covers. A CPU smoke run (`--device cpu --budget 60 --jobs 2 --probe-steps 30
--probe-updates 2 --dry`) checks the script end to end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("lam", "lam+xexo:1", "lam+robust-action:1", "lam+robust-flow:1", "lam@ema")
RATIOS = {"policy_train": 0.4, "decoder_train": 0.2, "bc_train": 0.4}  # of the LAM's updates (paper preset)


def timed(step, updates: int) -> float:
    """Seconds per call of `step`, after one untimed call (allocations, Adam state, cudnn autotune)."""
    step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(updates):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / updates


def stage_seconds(data: str, device: str, updates: int) -> dict[str, float]:
    """Seconds per update of every stage, decode of its batch included (num_workers 0, as the experiment)."""
    from exolam.data.windows import WindowDataset, WindowSource
    from exolam.experiments.control import Config
    from exolam.experiments.control_jobs import ACTION, ALT, IMAGE, parse_variant
    from exolam.models.lapo import LapoLAM, ema_hook
    from exolam.models.policy import (ActionDecoder, BCObjective, ConvPolicy, DecoderObjective,
                                      LatentPolicyObjective)
    from exolam.objectives import Objective, parse_objective

    cfg = Config()
    size, batch = cfg.env.image_size, cfg.train.batch_size

    def source(fields: dict, **kw):
        ds = WindowDataset(data, fields, image_size=size, labelled_episodes=kw.pop("labelled", None), **kw)
        return WindowSource(ds, 0, 1_000_000, batch, device=device).batches()

    def stepper(model, objective, batches, hooks=()):
        params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
        opt = torch.optim.Adam(params, lr=3e-4)

        def step():
            loss, _ = objective(model, next(batches))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            for hook in hooks:
                hook(0, model)
        return step

    out, lam = {}, None
    from exolam.data.flow import flow_dim

    for variant in VARIANTS:
        text, encoder = parse_variant(variant)
        terms = {t.name for t in parse_objective(text)}
        fields = {"o": IMAGE, "a": ACTION} | ({"o_alt": ALT} if "xexo" in terms else {})
        model = LapoLAM(dataclasses.replace(cfg.model, encoder=encoder, image_size=size)).to(device)
        objective = Objective(text, model.d_z, {"action": 6, "flow": flow_dim()}).to(device)
        batches = source(fields, flow="robust-flow" in terms, labelled=range(2) if "robust-action" in terms else None)
        out[variant] = timed(stepper(model, objective, batches, [ema_hook] if encoder == "ema" else ()), updates)
        lam = model if variant == "lam" else lam
    lam.eval()
    pi = ConvPolicy(dataclasses.replace(cfg.policy, image_size=size, out_dim=lam.d_z)).to(device)
    out["policy"] = timed(stepper(pi, LatentPolicyObjective(lam), source({"o": IMAGE})), updates)
    dec = ActionDecoder(cfg.decoder).to(device)
    out["decoder"] = timed(stepper(dec, DecoderObjective(lam), source({"o": IMAGE, "a": ACTION}, labelled=range(2))),
                           updates)
    bc = ConvPolicy(dataclasses.replace(cfg.policy, image_size=size, out_dim=6)).to(device)
    out["bc"] = timed(stepper(bc, BCObjective(), source({"o": IMAGE, "a": ACTION}, labelled=range(2))), updates)
    return out


def eval_steps_per_s(device: str, episodes: int, steps: int) -> float:
    from exolam.envs.control import ControlConfig
    from exolam.envs.control_eval import evaluate_policy
    from exolam.experiments.control import Config
    from exolam.models.policy import ConvPolicy, bc_policy

    cfg = Config()
    pi = ConvPolicy(dataclasses.replace(cfg.policy, image_size=cfg.env.image_size, out_dim=6)).to(device).eval()
    t = time.perf_counter()
    evaluate_policy(ControlConfig(image_size=cfg.env.image_size), bc_policy(pi), episodes, 0, steps)
    return episodes * steps / (time.perf_counter() - t)


def plan(rates: dict, args) -> dict:
    """Episodes and updates that fit the budget (module doc, step 2)."""
    collect_s = min(500 * 1000, args.budget * args.collect_share * rates["collect"]) / rates["collect"]
    episodes = max(10, min(500, int(collect_s * rates["collect"] / 1000)))
    collect_s = episodes * 1000 / rates["collect"]
    policies = len(VARIANTS) + 3  # 5 latent policies, bc, bc-all, bc-state (cheap: counted as a pixel policy)
    eval_s = policies * args.eval_episodes * 1000 / rates["eval"]
    s = rates["seconds_per_update"]
    per_u = (sum(s[v] for v in VARIANTS) + len(VARIANTS) * (RATIOS["policy_train"] * s["policy"]
             + RATIOS["decoder_train"] * s["decoder"]) + 3 * RATIOS["bc_train"] * s["bc"])
    left = args.budget - args.overhead - collect_s - eval_s
    updates = max(0, int(left / per_u) // 100 * 100)
    return {"fits": updates > 0, "episodes": episodes, "lam_updates": updates,
            **{k: int(updates * r) for k, r in RATIOS.items()}, "eval_episodes": args.eval_episodes,
            "projected_s": {"collect": round(collect_s), "eval": round(eval_s), "train": round(updates * per_u),
                            "overhead": args.overhead}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=600.0, help="seconds for collection + training + evaluation")
    p.add_argument("--jobs", type=int, default=16, help="collection processes")
    p.add_argument("--device", default="cuda")
    p.add_argument("--collect-share", type=float, default=0.35)
    p.add_argument("--overhead", type=float, default=90.0, help="seconds kept for probes, checkpoints, the report")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--probe-steps", type=int, default=100, help="steps of each probe episode")
    p.add_argument("--probe-updates", type=int, default=10, help="timed updates per stage")
    p.add_argument("--dry", action="store_true", help="print and save the plan, run nothing")
    args = p.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from exolam.envs.control import ControlConfig
    from exolam.envs.control_collect import collect
    from exolam.envs.control_expert import load_expert

    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        data = str(collect(ControlConfig(image_size=64), load_expert(None), Path(tmp) / "probe", args.jobs,
                           args.probe_steps, 0, codec="h264-lossless", jobs=args.jobs))
        rates = {"collect": args.jobs * args.probe_steps / (time.perf_counter() - t)}
        rates["seconds_per_update"] = stage_seconds(data, args.device, args.probe_updates)
    rates["eval"] = eval_steps_per_s(args.device, min(16, args.eval_episodes * 3), args.probe_steps)
    rates["probe_seconds"] = round(time.perf_counter() - wall)
    sizes = plan(rates, args)
    exo = [sys.executable, "-m", "exolam.cli"]
    collect_cmd = exo + ["control", "collect", "--episodes", str(sizes["episodes"]), "--codec", "h264-lossless",
                         "--jobs", str(args.jobs), "--out", str(out / "data")]
    run_cmd = exo + ["reproduce", "control", "--device", args.device, "--seeds", "1", "--jobs", "0",
                     "--data", str(out / "data" / "dataset"), "--episodes", str(sizes["episodes"]),
                     "--test-episodes", str(max(5, sizes["episodes"] // 20)), "--codec", "h264-lossless",
                     "--label-fractions", "0.1", "--train.steps", str(sizes["lam_updates"]),
                     "--policy-train.steps", str(sizes["policy_train"]), "--decoder-train.steps",
                     str(sizes["decoder_train"]), "--bc-train.steps", str(sizes["bc_train"]), "--eval-episodes",
                     str(sizes["eval_episodes"]), "--probe-windows", "2048", "--out", str(out / "runs")]
    record = {"rates": rates, "plan": sizes, "commands": [" ".join(collect_cmd), " ".join(run_cmd)],
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "cpus": os.cpu_count()}
    (out / "plan.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2), flush=True)
    if not sizes["fits"]:
        p_s = sizes["projected_s"]
        print(f"does not fit: collecting {sizes['episodes']} episodes and evaluating alone project to "
              f"{p_s['collect'] + p_s['eval'] + p_s['overhead']:.0f} s of the {args.budget:.0f} s budget on this "
              "machine, leaving no LAM update; nothing runs (raise --budget, or run on a GPU machine)", flush=True)
    if args.dry or not sizes["fits"]:
        return
    for cmd in (collect_cmd, run_cmd):
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"[{cmd[3]}] {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
