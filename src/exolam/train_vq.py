"""Training of the practical VQ LAM on the grid world (Sec. 5, App. C Table 2) and its sweep runner.

One *job* is one (config, seed): a grid-world dataset (Sec. 5), a `VQLAM` and an objective
(`objectives.Objective`, e.g. `lam+xexo:1` = L_LAM + 1 * L_X-exo, Eq. 5 + Eq. 16). Training follows
App. C Table 2: Adam lr 3e-4, batch 128, 16k updates, gradient-norm clip 5.0, lam_X-exo = lam_act = 1,
1 % action labels. Metrics are computed once, at the end, on the held-out split, in fp32 (`evaluate`).

Precision. `precision="bf16"` runs the forward pass under `torch.autocast(<device>, bfloat16)`
(master weights, gradients and Adam state stay fp32); on a CPU with native bf16 (avx512_bf16 or
AMX) this is ~1.5x faster for the conv IDM (notes/platform.md Sec. 3), on one without it (AVX2
only) bf16 is emulated and ~15x *slower* (measured: 0.85 s against 0.06 s per quick update).
`fp32` is the plain reference. `auto` (the default) is bf16 where it is native, fp32 elsewhere
(and on CUDA, where the tiny model runs faster in fp32); each job resolves it (`make_job`), so
the row's `precision` column and the checkpoint spec say what ran.

Sweeps (`run_jobs`). On CPU the jobs run in `workers` spawned processes with 1 torch thread each
(the grid-world LAM is compute-bound and the VQ library does not vmap, design.md); on CUDA in this
process, one job at a time. The parent is the only writer of results.csv: each finished row is
recorded at once and the file is kept sorted in job order, so a killed sweep, rerun with the same
command, trains only the missing (config, seed) pairs and ends with the same results.csv as an
uninterrupted run. Everything a job computes is a function of the job alone: the seed fixes the
data (env seed), the initialisation (torch.manual_seed) and the minibatch stream
(`train.batch_indices`), and every CPU job runs on exactly 1 thread whatever `workers` is (thread
count changes float reduction order). Timings never enter results.csv.

Checkpoints: `checkpoints/<config>-seed<k>/model.safetensors` (the VQLAM state dict) and `config.json`
(the job spec, the row, timings), each written to a temporary name and renamed. A job whose exact
spec (env, model, train, objective, seed, device type) already has a checkpoint under one of the
`reuse` roots is evaluated from it instead of trained (how `swap` reuses the `gridworld` runs).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing
import os
import re
import threading
import time
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save

from exolam.data.transitions import Transitions
from exolam.envs.gridworld import CONTROL_REGION, EXO_REGION, H, N_ACTIONS, W, GridWorldConfig, make_dataset, noise_floor
from exolam.errors import ConfigError, check_positive_int, check_range
from exolam.fields import check_set_by
from exolam.runio import RunDir, atomic_write, to_jsonable
from exolam.metrics.pixel import codebook_usage, consistency_loss, exo_region_mse, probe_accuracy, region_mse, swap_psnr
from exolam.models.vq import VQLAM, VQLAMConfig
from exolam.objectives import Objective, format_objective, parse_objective, sq_err
from exolam.train import batch_indices

METRICS = [
    "consistency_post", "consistency_pre", "code_flip_rate",  # Fig. 5b left
    "exo_mse", "exo_mse_norm", "control_mse",  # Fig. 5b right (norm: / sigma^2/4)
    "probe_acc", "code_perplexity", "codes_used",  # action alignment, collapse check
    "psnr_recon", "psnr_aug_recon", "psnr_swap_vs_o_next", "psnr_swap_vs_o_next_alt",  # Fig. 2b
    "gap_swap", "gap_aug", "gap_swap_alt",
    "loss_lam_test", "loss_train",
]


@dataclasses.dataclass
class VQTrainConfig:
    """Training settings of App. C Table 2 (the lambdas live in the objective string)."""

    steps: int = 16_000
    """Adam updates"""
    batch_size: int = 128
    lr: float = 3e-4
    grad_clip: float = 5.0
    """max global gradient norm"""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """bf16: forward under autocast (fp32 master weights); fp32: plain; auto: bf16 on a CPU with native bf16"""

    def validate(self, prefix: str = "train") -> "VQTrainConfig":
        check_positive_int(f"{prefix}.steps", self.steps)
        check_positive_int(f"{prefix}.batch_size", self.batch_size)
        check_range(f"{prefix}.lr", self.lr, 0.0, None, lo_open=True)
        check_range(f"{prefix}.grad_clip", self.grad_clip, 0.0, None, lo_open=True)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"{prefix}.precision = {self.precision!r} must be 'auto', 'bf16' or 'fp32'")
        return self


@dataclasses.dataclass
class VQSweepConfig:
    """Fields shared by the grid-world experiments (gridworld, swap, xexo_sweep)."""

    env: GridWorldConfig = dataclasses.field(default_factory=GridWorldConfig)
    """dataset; `sigma` and `seed` are set per job (seed = the run's seed)"""
    model: VQLAMConfig = dataclasses.field(default_factory=VQLAMConfig)
    train: VQTrainConfig = dataclasses.field(default_factory=VQTrainConfig)
    seeds: int = 3
    """seeds per config (the paper: mean +- std over 3)"""
    workers: int = 2
    """CPU worker processes, 1 torch thread each (0: in this process); ignored on cuda"""
    device: str = "cpu"

    def validate(self) -> None:
        check_set_by(self)
        self.env.validate()
        self.model.validate()
        self.train.validate()
        check_positive_int("seeds", self.seeds)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers = {self.workers!r} must be an integer >= 0")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device = {self.device!r} must be 'cpu' or 'cuda[:i]'")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device = {self.device!r} but no CUDA device is available here")


@dataclasses.dataclass(frozen=True)
class Job:
    """One (config, seed) of a sweep; `extra` are the swept (column, value) pairs of its row."""

    config: str
    seed: int
    objective: str
    env: GridWorldConfig
    model: VQLAMConfig
    train: VQTrainConfig
    extra: tuple = ()

    @property
    def name(self) -> str:
        """Checkpoint folder name: the config key with characters other than [A-Za-z0-9._=+,-] -> '_'."""
        return re.sub(r"[^A-Za-z0-9._=+,-]", "_", self.config) + f"-seed{self.seed}"

    def spec(self, device: str) -> dict:
        """Everything that determines the trained weights (the key for checkpoint reuse)."""
        return {"env": to_jsonable(self.env), "model": to_jsonable(self.model), "train": to_jsonable(self.train),
                "objective": self.objective, "seed": self.seed, "device": torch.device(device).type}


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX), from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """`auto` -> bf16 on a CPU with native bf16, fp32 elsewhere (CUDA included); others unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cpu" and native_bf16_cpu() else "fp32"


def make_job(config: str, seed: int, objective: str, cfg: VQSweepConfig, sigma: float,
             train: VQTrainConfig | None = None, extra: tuple = ()) -> Job:
    """A job of a sweep config: env at `sigma` with the run seed, objective normalised (`lam+xexo:1`),
    precision resolved for cfg.device."""
    env = dataclasses.replace(cfg.env, sigma=sigma, seed=seed).validate()
    objective = format_objective(parse_objective(objective))
    train = train or cfg.train
    train = dataclasses.replace(train, precision=resolve_precision(train.precision, cfg.device))
    return Job(config, seed, objective, env, cfg.model, train, extra)


# ---------------------------------------------------------------- one model


def build(job: Job) -> tuple[VQLAM, Objective]:
    """The LAM and the objective (with its W heads of Eq. 19), initialised from the job's seed."""
    torch.manual_seed(job.seed)
    lam = VQLAM(job.model)
    objective = Objective(job.objective, job.model.d_z, {"action": N_ACTIONS, "q": H * W})  # q: a 1 x H x W frame
    return lam, objective


def _training_view(data: Transitions, objective: Objective) -> Transitions:
    """Only the fields the objective reads, so each minibatch gathers as little as possible."""
    names = {t.name for t in objective.terms}
    alt = {"o_alt": data.o_alt, "o_next_alt": data.o_next_alt} if "xexo" in names else {}
    q = {"q": data.q} if "robust-q" in names else {}
    return Transitions(o=data.o, o_next=data.o_next, a=data.a, label_mask=data.label_mask, **alt, **q)


def train_vq(lam: VQLAM, objective: Objective, data: Transitions, seed: int, cfg: VQTrainConfig,
             device: str = "cpu") -> float:
    """Adam on lam + objective heads with global-norm clipping (App. C Table 2).

    Minibatches come from `batch_indices(seed, ...)`. Returns the mean total training loss over the
    last 1 % of updates (read back only there, so the loop never waits on the device otherwise).
    """
    lam.to(device).train()
    objective.to(device).train()
    data = _training_view(data, objective).to(device)
    params = [p for p in list(lam.parameters()) + list(objective.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, foreach=True)  # foreach, not fused: fused Adam is ~15x slower on CPU (design.md)
    amp = dict(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=resolve_precision(cfg.precision, device) == "bf16")
    tail = max(1, cfg.steps // 100)
    acc = torch.zeros((), device=device)
    for step, idx in enumerate(batch_indices(seed, len(data), cfg.steps, cfg.batch_size)):
        batch = data.index(idx.to(device))
        with torch.autocast(**amp):
            loss, _ = objective(lam, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if step >= cfg.steps - tail:
            acc += loss.detach().float()
    loss_train = float(acc) / tail
    if not math.isfinite(loss_train):
        raise ConfigError(f"train.lr = {cfg.lr:g}: training diverged (non-finite loss {loss_train}); lower --train.lr")
    return loss_train


def _encode_chunks(lam: VQLAM, o: torch.Tensor, o_next: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([lam.encode(o[i:i + chunk], o_next[i:i + chunk]) for i in range(0, len(o), chunk)])


def evaluate(lam: VQLAM, train: Transitions, test: Transitions, sigma: float) -> dict[str, float]:
    """All grid-world metrics of one model, in fp32 on the held-out split (design.md metrics table).

    consistency_* / code_flip_rate: E||z - z~||^2 after / before VQ and the code-flip rate (Fig. 5b);
    exo_mse(_norm): FDM pixel MSE on the bottom row, raw and / (sigma^2/4) (NaN at sigma = 0);
    control_mse: the same on the 3x4 control region; probe_acc: least-squares probe z -> action fitted
    on the train split, scored on the test split; code_perplexity / codes_used on the test split;
    psnr_* / gap_*: the xi'-swap test of Sec. 4.2 (Fig. 2b); loss_lam_test: L_LAM (Eq. 5) on test.
    """
    cons = consistency_loss(lam, test)
    exo = exo_region_mse(lam, test, EXO_REGION.to(test.o.device), noise_floor(sigma))
    sw = swap_psnr(lam, test)
    row = {"consistency_post": cons["post"], "consistency_pre": cons["pre"], "code_flip_rate": cons["flip_rate"],
           "exo_mse": exo["raw"], "exo_mse_norm": exo["normalized"],
           "control_mse": region_mse(lam, test, CONTROL_REGION.to(test.o.device))}
    lam.eval()
    with torch.no_grad():
        out = lam.idm(test.o, test.o_next)
        row["probe_acc"] = probe_accuracy(_encode_chunks(lam, train.o, train.o_next), train.a, out.z, test.a,
                                          N_ACTIONS)
        usage = codebook_usage(out.codes.cpu(), lam.cfg.codebook_size)
        row["code_perplexity"], row["codes_used"] = usage["perplexity"], usage["used"]
        for k in ("recon", "aug_recon", "swap_vs_o_next", "swap_vs_o_next_alt"):
            row[f"psnr_{k}"] = sw[k]
        for k in ("gap_swap", "gap_aug", "gap_swap_alt"):
            row[k] = sw[k]
        row["loss_lam_test"] = float(sq_err(lam.fdm(test.o, out.z).float(), test.o_next))
    return row


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(folder: Path, lam: VQLAM, meta: dict) -> None:
    """model.safetensors (state dict, CPU) + config.json, each via a temporary name and a rename."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in lam.state_dict().items()}
    atomic_write(folder / "model.safetensors", save(state))
    atomic_write(folder / "config.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_checkpoint(folder: Path) -> tuple[VQLAM, dict]:
    """A VQLAM (eval mode, CPU) and the config.json of a checkpoint folder."""
    folder = Path(folder)
    for f in ("model.safetensors", "config.json"):
        if not (folder / f).is_file():
            raise ConfigError(f"checkpoint {folder}: missing {f}")
    meta = json.loads((folder / "config.json").read_text())
    lam = VQLAM(VQLAMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["spec"]["model"].items()}))
    lam.load_state_dict(load_file(folder / "model.safetensors"))
    return lam.eval(), meta


def _spec_key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def scan_checkpoints(roots) -> dict[str, Path]:
    """spec key -> checkpoint folder, over every `root/*/config.json` that has its model file."""
    found = {}
    for root in roots:
        for cfg_file in sorted(Path(root).glob("*/config.json")):
            if (cfg_file.parent / "model.safetensors").is_file():
                try:
                    found.setdefault(_spec_key(json.loads(cfg_file.read_text())["spec"]), cfg_file.parent)
                except (ValueError, KeyError):
                    continue  # not one of ours
    return found


# ---------------------------------------------------------------- one job, one sweep


def run_job(job: Job, device: str, ckpt_root: str, reuse_from: str | None = None) -> dict:
    """Train (or load from `reuse_from`) one job, save its checkpoint, return its results.csv row."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    train, test = make_dataset(job.env)
    t0 = time.perf_counter()
    if reuse_from is not None:
        lam, src = load_checkpoint(Path(reuse_from))
        loss_train = src["row"]["loss_train"]
    else:
        lam, objective = build(job)
        loss_train = train_vq(lam, objective, train, job.seed, job.train, device)
    seconds = time.perf_counter() - t0
    lam = lam.float().to(device)
    metrics = evaluate(lam, train.to(device), test.to(device), job.env.sigma)
    row = {"config": job.config, "seed": job.seed, **dict(job.extra), "objective": job.objective,
           "steps": job.train.steps, "precision": job.train.precision, **metrics, "loss_train": loss_train}
    meta = {"spec": job.spec(device), "config": job.config, "row": row, "reused_from": reuse_from,
            "train_seconds": None if reuse_from else seconds,
            "updates_per_s": None if reuse_from else job.train.steps / seconds}
    save_checkpoint(Path(ckpt_root) / job.name, lam, meta)
    return row


def _init_worker() -> None:
    """1 torch thread; exit as soon as the parent dies (a killed sweep leaves no busy orphans)."""
    torch.set_num_threads(1)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_job_1thread(job: Job, device: str, ckpt_root: str, reuse_from: str | None) -> dict:
    """run_job with exactly 1 torch thread on CPU (in a worker, or in this process for workers=0)."""
    if torch.device(device).type != "cpu":
        return run_job(job, device, ckpt_root, reuse_from)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_job(job, device, ckpt_root, reuse_from)
    finally:
        torch.set_num_threads(before)


def run_jobs(jobs: list[Job], run_dir: RunDir, *, workers: int = 2, device: str = "cpu", reuse=(),
             log=print) -> None:
    """Run every job not yet in run_dir's results.csv; rows are recorded as jobs finish.

    CPU: `workers` spawned processes x 1 torch thread (0 = in this process, 1 thread). CUDA: in this
    process. `reuse`: extra checkpoint roots searched for a job's exact spec (besides run_dir's own).
    """
    keys = [(j.config, j.seed) for j in jobs]
    if len(set(keys)) != len(keys):
        raise ConfigError("sweep lists a (config, seed) twice")
    done = run_dir.done_keys()
    todo = [j for j in jobs if (j.config, j.seed) not in done]
    if done:
        log(f"{run_dir.path}: resuming, {len(done)} rows already recorded, {len(todo)} to go")
    ckpt_root = run_dir.path / "checkpoints"
    found = scan_checkpoints(list(reuse) + [ckpt_root])
    tasks = [(j, device, str(ckpt_root), _str_or_none(found.get(_spec_key(j.spec(device))))) for j in todo]
    n_reused = sum(t[3] is not None for t in tasks)
    if n_reused:
        log(f"  {run_dir.name}: {n_reused} of {len(tasks)} jobs evaluated from existing checkpoints")
    t0 = time.perf_counter()
    cuda = torch.device(device).type == "cuda"
    if cuda or workers == 0 or not tasks:
        for i, t in enumerate(tasks):
            run_dir.append([_run_job_1thread(*t)], order=keys)
            log(f"  {run_dir.name}: {i + 1}/{len(tasks)} jobs done ({time.perf_counter() - t0:.0f} s)")
        return
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                initializer=_init_worker) as pool:
        futures = [pool.submit(run_job, *t) for t in tasks]
        try:
            for i, fut in enumerate(cf.as_completed(futures)):
                run_dir.append([fut.result()], order=keys)
                log(f"  {run_dir.name}: {i + 1}/{len(tasks)} jobs done ({time.perf_counter() - t0:.0f} s)")
        except cf.process.BrokenProcessPool as e:
            raise RuntimeError("a sweep worker died (killed, out of memory, or the calling script lacks the "
                               "`if __name__ == '__main__':` guard that spawned workers need); rerun the same "
                               "command to resume") from e
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _str_or_none(p: Path | None) -> str | None:
    return None if p is None else str(p)
