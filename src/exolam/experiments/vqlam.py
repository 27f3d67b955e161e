"""The grid-world VQ LAM jobs shared by `gridworld`, `swap` and `xexo_sweep` (Sec. 5, App. C Table 2).

One *job* is one (config, seed): a grid-world dataset (Sec. 5), a `VQLAM` and an objective
(`objectives.Objective`, e.g. `lam+xexo:1` = L_LAM + 1 * L_X-exo, Eq. 5 + Eq. 16), trained by the
engine (train/engine.py) with App. C Table 2's settings: Adam lr 3e-4, batch 128, 16k updates,
gradient-norm clip 5.0, lam_X-exo = lam_act = 1, 1 % action labels. Metrics are computed once, at the
end, on the held-out split, in fp32 (`evaluate`).

Every job runs on exactly 1 torch thread on CPU (whatever --jobs is: the thread count changes float
reduction order), and everything it computes is a function of the job: the seed fixes the data
(env seed), the initialisation (torch.manual_seed) and the minibatch stream (data/sampling.py).

Checkpoints: `checkpoints/<job.name>/` is the engine's checkpoint folder (model.safetensors,
config.json naming VQLAM and its config, training_state/); it is rewritten every `save_every`
updates, so a killed job resumes where it stopped. A job whose exact spec (env, model, train,
objective, seed, device type) already has a finished checkpoint under one of the `reuse` roots is
evaluated from it instead of trained (how `swap` reuses the `gridworld` runs).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch

from exolam.data.sampling import TensorSource
from exolam.data.transitions import Transitions
from exolam.envs.gridworld import (CONTROL_REGION, EXO_REGION, N_ACTIONS, GridWorldConfig, H, W, make_dataset,
                                   noise_floor)
from exolam.errors import ConfigError, check_positive_int
from exolam.set_by import check_set_by
from exolam.metrics.pixel import (codebook_usage, consistency_loss, exo_region_mse, probe_accuracy, region_mse,
                                  swap_psnr)
from exolam.models import checkpoint
from exolam.models.vq import VQLAM, VQLAMConfig
from exolam.objectives import Objective, format_objective, parse_objective, sq_err
from exolam.runs.files import to_jsonable
from exolam.runs.launch import launched_externally
from exolam.runs.rundir import RunDir
from exolam.runs.sweep import Task, run_tasks
from exolam.train import engine
from exolam.train.engine import TrainConfig, resolve_precision

METRICS = [
    "consistency_post", "consistency_pre", "code_flip_rate",  # Fig. 5b left
    "exo_mse", "exo_mse_norm", "control_mse",  # Fig. 5b right (norm: / sigma^2/4)
    "probe_acc", "code_perplexity", "codes_used",  # action alignment, collapse check
    "psnr_recon", "psnr_aug_recon", "psnr_swap_vs_o_next", "psnr_swap_vs_o_next_alt",  # Fig. 2b
    "gap_swap", "gap_aug", "gap_swap_alt",
    "loss_lam_test", "loss_train",
]
TARGET_DIMS = {"action": N_ACTIONS, "q": H * W}  # q: a 1 x H x W frame


GRID_FRAMES = {f"model.{f}": "the grid world's frames are 4 x 4 x 1" for f in ("image_size", "in_channels")}


@dataclasses.dataclass
class VQSweepConfig:
    """Fields shared by the grid-world experiments (gridworld, swap, xexo_sweep)."""

    env: GridWorldConfig = dataclasses.field(default_factory=GridWorldConfig)
    """dataset; `sigma` and `seed` are set per job (seed = the run's seed)"""
    model: VQLAMConfig = dataclasses.field(default_factory=VQLAMConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    seeds: int = 3
    """seeds per config (the paper: mean +- std over 3)"""
    device: str = "cpu"
    """cpu or cuda"""

    def validate(self) -> None:
        check_set_by(self)
        self.env.validate()
        self.model.validate()
        self.train.validate()
        check_positive_int("seeds", self.seeds)
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device = {self.device!r} must be 'cpu' or 'cuda[:i]'")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device = {self.device!r} but no CUDA device is available here")


@dataclasses.dataclass  # not frozen: Fabric's spawn launcher rebuilds the dataclasses it passes to workers
class Job:
    """One (config, seed) of a sweep; `extra` are the swept (column, value) pairs of its row."""

    config: str
    seed: int
    objective: str
    env: GridWorldConfig
    model: VQLAMConfig
    train: TrainConfig
    extra: tuple = ()

    @property
    def name(self) -> str:
        """Checkpoint folder name: the config key with characters other than [A-Za-z0-9._=+,-] -> '_'."""
        return re.sub(r"[^A-Za-z0-9._=+,-]", "_", self.config) + f"-seed{self.seed}"

    def spec(self, device: str) -> dict:
        """Everything that determines the trained weights (the key for resume and checkpoint reuse)."""
        train = {k: v for k, v in to_jsonable(self.train).items() if k not in ("save_every", "log_every")}
        return {"env": to_jsonable(self.env), "model": to_jsonable(self.model), "train": train,
                "objective": self.objective, "seed": self.seed, "device": torch.device(device).type}


def make_job(config: str, seed: int, objective: str, cfg: VQSweepConfig, sigma: float,
             train: TrainConfig | None = None, extra: tuple = ()) -> Job:
    """A job of a sweep config: env at `sigma` with the run seed, objective normalised (`lam+xexo:1`),
    precision resolved for cfg.device."""
    env = dataclasses.replace(cfg.env, sigma=sigma, seed=seed).validate()
    objective = format_objective(parse_objective(objective))
    train = train or cfg.train
    train = dataclasses.replace(train, precision=resolve_precision(train.precision, cfg.device))
    return Job(config, seed, objective, env, cfg.model, train, extra)


def build(job: Job) -> tuple[VQLAM, Objective]:
    """The LAM and the objective (with its W heads of Eq. 19), initialised from the job's seed."""
    torch.manual_seed(job.seed)
    return VQLAM(job.model), Objective(job.objective, job.model.d_z, TARGET_DIMS)


def fields_read(objective: Objective) -> tuple[str, ...]:
    """The Transitions fields an objective reads, so each minibatch gathers as little as possible."""
    names = {t.name for t in objective.terms}
    return ("o", "o_next", "a", "label_mask") + (("o_alt", "o_next_alt") if "xexo" in names else ()) + \
        (("q",) if "robust-q" in names else ())


def _encode_chunks(model: VQLAM, o: torch.Tensor, o_next: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([model.encode(o[i:i + chunk], o_next[i:i + chunk]) for i in range(0, len(o), chunk)])


def evaluate(model: VQLAM, train: Transitions, test: Transitions, sigma: float) -> dict[str, float]:
    """All grid-world metrics of one model, in fp32 on the held-out split (docs/design.md metrics table).

    consistency_* / code_flip_rate: E||z - z~||^2 after / before VQ and the code-flip rate (Fig. 5b);
    exo_mse(_norm): FDM pixel MSE on the bottom row, raw and / (sigma^2/4) (NaN at sigma = 0);
    control_mse: the same on the 3x4 control region; probe_acc: least-squares probe z -> action fitted
    on the train split, scored on the test split; code_perplexity / codes_used on the test split;
    psnr_* / gap_*: the xi'-swap test of Sec. 4.2 (Fig. 2b); loss_lam_test: L_LAM (Eq. 5) on test.
    """
    cons = consistency_loss(model, test)
    exo = exo_region_mse(model, test, EXO_REGION.to(test.o.device), noise_floor(sigma))
    sw = swap_psnr(model, test)
    row = {"consistency_post": cons["post"], "consistency_pre": cons["pre"], "code_flip_rate": cons["flip_rate"],
           "exo_mse": exo["raw"], "exo_mse_norm": exo["normalized"],
           "control_mse": region_mse(model, test, CONTROL_REGION.to(test.o.device))}
    model.eval()
    with torch.no_grad():
        out = model.idm(test.o, test.o_next)
        row["probe_acc"] = probe_accuracy(_encode_chunks(model, train.o, train.o_next), train.a, out.z, test.a,
                                          N_ACTIONS)
        usage = codebook_usage(out.codes.cpu(), model.cfg.codebook_size)
        row["code_perplexity"], row["codes_used"] = usage["perplexity"], usage["used"]
        for k in ("recon", "aug_recon", "swap_vs_o_next", "swap_vs_o_next_alt"):
            row[f"psnr_{k}"] = sw[k]
        for k in ("gap_swap", "gap_aug", "gap_swap_alt"):
            row[k] = sw[k]
        row["loss_lam_test"] = float(sq_err(model.fdm(test.o, out.z).float(), test.o_next))
    return row


# ---------------------------------------------------------------- one job, one sweep


def finished(folder: Path) -> dict | None:
    """config.json of a checkpoint folder whose training ran to the end, else None."""
    try:
        meta = checkpoint.read_config(folder)
    except ConfigError:
        return None
    return meta if meta.get("step") == meta.get("steps") and "loss_train" in meta else None


def scan_checkpoints(roots) -> dict[str, Path]:
    """spec key -> finished checkpoint folder, over every `root/*/` of ours."""
    found = {}
    for root in roots:
        for folder in sorted(p for p in Path(root).glob("*") if p.is_dir() and not p.name.startswith(".")):
            meta = finished(folder)
            if meta is not None:
                found.setdefault(_spec_key(meta["spec"]), folder)
    return found


def _spec_key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def train_job(fabric, job: Job, device: str, ckpt: Path) -> tuple[VQLAM, float]:
    """Train (or resume) one job through the engine; the trained model and its tail training loss."""
    model, objective = build(job)
    data, _ = make_dataset(job.env)
    source = TensorSource(data, job.seed, job.train.steps, job.train.batch_size, fields_read(objective), fabric.device)
    result = engine.fit(fabric, model, objective, source, job.train, spec=job.spec(device), ckpt=ckpt,
                        metrics=ckpt.parent.parent / "logs" / f"{job.name}.jsonl", desc=job.name)
    return model, result.loss_train


def _train_job_ddp(fabric, job: Job, device: str, ckpt: Path) -> None:
    """train_job on each of N processes; nothing is returned (tensors cannot outlive the workers)."""
    train_job(fabric, job, device, ckpt)


def run_job(job: Job, device: str, ckpt_root: str, reuse_from: str | None = None) -> list[dict]:
    """Train (resume, or load from `reuse_from` / a finished own checkpoint) one job; its results.csv row."""
    cpu = torch.device(device).type == "cpu"
    threads = torch.get_num_threads()
    if cpu:
        torch.set_num_threads(1)
    else:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        ckpt = Path(ckpt_root) / job.name
        src = Path(reuse_from) if reuse_from else ckpt
        meta = finished(src)  # a finished checkpoint (reused, or this job's own) is evaluated, not retrained
        if meta is not None:
            model, loss_train = checkpoint.load_model(src), meta["loss_train"]
        else:
            one = job.train.devices == 1
            fit_one = train_job if one else _train_job_ddp
            out = engine.train_or_resume(job.train, device, ckpt, job.spec(device), fit_one, job, device, ckpt)
            if out is None:  # N processes trained it; rank 0 wrote the finished checkpoint
                model, loss_train = checkpoint.load_model(ckpt), finished(ckpt)["loss_train"]
            else:
                model, loss_train = out
        train, test = make_dataset(job.env)
        model = model.float().to(device)
        metrics = evaluate(model, train.to(device), test.to(device), job.env.sigma)
    finally:
        torch.set_num_threads(threads)
    return [{"config": job.config, "seed": job.seed, **dict(job.extra), "objective": job.objective,
             "steps": job.train.steps, "precision": job.train.precision, "device": torch.device(device).type,
             **metrics, "loss_train": loss_train}]


def run_jobs(jobs: list[Job], run: RunDir, *, jobs_parallel: int | None = None, device: str = "cpu", reuse=(),
             log=print) -> None:
    """Every job of run's shard not yet recorded, through the sweep runner (runs/sweep.py).

    `jobs_parallel`: worker processes (None: 2 on CPU, the 2 x 1-thread layout that is fastest for this
    compute-bound LAM on our 2 cores; 0 on CUDA). `reuse`: extra checkpoint roots searched for a job's
    exact spec (besides run's own)."""
    if launched_externally():  # torchrun / SLURM already started one process per rank
        if jobs_parallel:
            raise ConfigError(f"--jobs = {jobs_parallel}: under torchrun or SLURM each rank runs the sweep's jobs "
                              "itself; use --jobs 0 (the default there)")
        jobs_parallel = 0
    if jobs_parallel is None:
        jobs_parallel = 2 if torch.device(device).type == "cpu" else 0
    ckpt_root = run.path / "checkpoints"
    found = scan_checkpoints(list(reuse)) if reuse else {}
    tasks = []
    for j in jobs:
        src = found.get(_spec_key(j.spec(device)))
        tasks.append(Task(((j.config, j.seed),), run_job, (j, device, str(ckpt_root), None if src is None else str(src))))
    n_reused = sum(t.args[3] is not None for t in tasks)
    if n_reused:
        log(f"  {run.name}: {n_reused} of {len(tasks)} jobs can be evaluated from existing checkpoints")
    run_tasks(tasks, run, [(j.config, j.seed) for j in jobs], jobs=jobs_parallel, log=log)
