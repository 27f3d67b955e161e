"""Distracting Control collection speed (App. D): the fast render path against MuJoCo's default visuals.

Frames/s of `envs.control_collect.rollout` (reset, policy, step, xi drift and the renders of every
frame; the frames are kept in memory as the collector does) on cheetah-run at 64x64, random policy
`g.uniform(-1, 1, 6)`, 1 process, for two render paths side by side in one run:

    fast     what `DistractingControl` does now: `mujoco.Renderer`, shadows, reflections and MSAA off
             (model.vis.quality.offsamples = 0), skybox on (shared/notes/platform.md sec. 4)
    default  the same env instance with MuJoCo's default visuals restored (built here, the library is
             untouched): the renderer is closed, offsamples set back to the model's own value (4x MSAA),
             a new `mujoco.Renderer` made, and the shadow and reflection flags switched back on

each without and with the paired render (`paired=True`: a second render of the same physics under
xi_alt per frame, 2 renders per frame). Timed rollouts run in alternating order (A B ... B A), each
after an untimed warm-up, so a drift in machine load hits both paths alike. Then --workers processes
(spawned, 1 thread each, released together by a Barrier) run the paired rollout of each path at once,
and the paper's full collection (500 episodes x 1000 steps, paired) is projected from the 1-process
rate and from the measured aggregate. The projection covers the rollouts only: staging each episode
(np.savez_compressed) and the final video encoding come on top.

Numbers measured while other jobs share the CPU are lower than on an idle machine and drift between
runs: read them as ratios (fast / default, paired / unpaired, 2 processes / 1), which are measured
side by side; the load average is printed first. llvmpipe (Mesa's software GL) spawns its own
threads (LP_NUM_THREADS, by default one per core), so even "1 process" can use more than one core.

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python benchmarks/control_speed.py         # ~1-2 min on our 2-core CPU
    OMP_NUM_THREADS=1 MUJOCO_GL=egl python benchmarks/control_speed.py --steps 100 --default-steps 20 \\
        --repeats 1 --workers 0                                                  # smoke, ~15 s
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

FULL_EPISODES, FULL_STEPS = 500, 1000  # App. D's collection
PATHS = ("fast", "default")


def random_policy(state, g):
    return g.uniform(-1, 1, 6)


def default_visuals(env) -> dict:
    """Re-enable MuJoCo's default visuals on `env` (module doc); returns what was set."""
    import mujoco
    from dm_control import suite

    offsamples = int(suite.load(env.cfg.domain, env.cfg.task).physics.model.ptr.vis.quality.offsamples)
    m, n = env.physics.model.ptr, env.cfg.image_size
    env._renderer.close()
    m.vis.quality.offsamples = offsamples  # read when the GL buffer is made
    env._renderer = mujoco.Renderer(m, n, n)
    flags = env._renderer.scene.flags
    flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 1
    flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 1
    return {"offsamples": offsamples, "shadowsize": int(m.vis.quality.shadowsize)}


def make_env(path: str, image_size: int):
    import logging

    from exolam.envs.control import ControlConfig, DistractingControl

    logging.getLogger("absl").setLevel(logging.ERROR)  # dm_control's per-load deprecation warning

    env = DistractingControl(ControlConfig(image_size=image_size))
    info = default_visuals(env) if path == "default" else {"offsamples": 0, "shadowsize": None}
    return env, info


def timed_rollout(env, steps: int, paired: bool, episode: int) -> float:
    """Seconds of one `rollout` of `steps` frames (cheetah never ends before 1000)."""
    from exolam.envs.control_collect import rollout

    t = time.perf_counter()
    out = rollout(env, random_policy, 0, episode, steps, paired)
    dt = time.perf_counter() - t
    assert len(out["action"]) == steps
    return dt


def _worker(steps: dict, image_size: int, barrier) -> dict[str, float]:
    """One collector process: paired frames/s of each path, timed at the same time as the others."""
    import torch

    torch.set_num_threads(1)
    rates = {}
    for path in PATHS:
        env, _ = make_env(path, image_size)
        timed_rollout(env, 5, True, 0)  # warm-up: GL context, first frames
        barrier.wait()
        rates[path] = steps[path] / timed_rollout(env, steps[path], True, 1)
        env.close()
    return rates


def processes(workers: int, steps: dict, image_size: int) -> list[dict[str, float]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(workers)
        with ctx.Pool(workers) as pool:
            return pool.starmap(_worker, [(steps, image_size, barrier)] * workers)


def hours(rate: float) -> float:
    """Wall hours of the full paired collection at `rate` paired frames/s."""
    return FULL_EPISODES * FULL_STEPS / rate / 3600


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400, help="frames per timed rollout, fast path")
    p.add_argument("--default-steps", type=int, default=60, help="frames per timed rollout, default visuals")
    p.add_argument("--repeats", type=int, default=3, help="timed rollouts per path and pairing (alternating order)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="concurrent collector processes to measure (0: skip)")
    args = p.parse_args()
    import mujoco
    import torch

    torch.set_num_threads(1)
    wall = time.perf_counter()
    steps = {"fast": args.steps, "default": args.default_steps}
    envs = {path: make_env(path, args.image_size) for path in PATHS}
    print(f"cheetah-run {args.image_size}x{args.image_size}, random policy, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, "
          f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'unset')}, mujoco {mujoco.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.repeats} timed rollout(s) per row "
          f"(fast {args.steps} frames, default {args.default_steps})", flush=True)
    for path, (_, info) in envs.items():
        print(f"  {path}: offsamples {info['offsamples']}, shadows/reflections "
              f"{'on, shadowsize ' + str(info['shadowsize']) if path == 'default' else 'off'}")
    rows = [(path, paired) for paired in (False, True) for path in PATHS]
    for path, paired in rows:
        timed_rollout(envs[path][0], 5, paired, 0)
    times = {row: [] for row in rows}
    for r in range(args.repeats):
        for path, paired in (rows if r % 2 == 0 else rows[::-1]):
            times[(path, paired)].append(timed_rollout(envs[path][0], steps[path], paired, 1 + r))
    for env, _ in envs.values():
        env.close()

    rate = {row: steps[row[0]] * len(t) / sum(t) for row, t in times.items()}
    print(f"\n{'path':<9}{'paired':<8}{'frames/s':>10}{'renders/s':>11}   per rollout")
    for (path, paired), t in times.items():
        per = ", ".join(f"{steps[path] / x:.1f}" for x in t)
        print(f"{path:<9}{'yes' if paired else 'no':<8}{rate[(path, paired)]:>10.1f}"
              f"{rate[(path, paired)] * (2 if paired else 1):>11.1f}   ({per})")
    for paired in (False, True):
        print(f"fast / default, {'paired' if paired else 'unpaired'}: "
              f"{rate[('fast', paired)] / rate[('default', paired)]:.1f}x")
    for path in PATHS:
        print(f"cost of the paired render, {path}: {rate[(path, False)] / rate[(path, True)]:.2f}x the time per frame")

    print(f"\nprojected full collection ({FULL_EPISODES} episodes x {FULL_STEPS} steps, paired = "
          f"{FULL_EPISODES * FULL_STEPS:,} frames, {2 * FULL_EPISODES * FULL_STEPS:,} renders; rollouts only):")
    for path in PATHS:
        r1 = rate[(path, True)]
        print(f"  {path:<8} 1 process {hours(r1):7.2f} h   2 processes, projected at 2x {hours(2 * r1):7.2f} h")
    if args.workers:
        t = time.perf_counter()
        per_proc = processes(args.workers, steps, args.image_size)
        print(f"\n{args.workers} processes at once (paired, {steps['fast']} / {steps['default']} frames each, "
              f"{time.perf_counter() - t:.0f} s with start-up; load average {os.getloadavg()[0]:.1f}):")
        print(f"{'path':<9}{'aggregate frames/s':>19}{'per process':>22}{'vs 1 process':>14}{'full collection':>17}")
        for path in PATHS:
            agg = sum(r[path] for r in per_proc)
            procs = " + ".join(f"{r[path]:.1f}" for r in per_proc)
            print(f"{path:<9}{agg:>19.1f}{procs:>22}{agg / rate[(path, True)]:>13.2f}x{hours(agg):>15.2f} h")
    else:
        print("(--workers 0: the multi-process figures above are projected, not measured)")
    print(f"(benchmark wall time {time.perf_counter() - wall:.0f} s)")


if __name__ == "__main__":
    main()
