"""The one training loop for image LAMs: any model with the idm/fdm protocol, any `Objective`, any
batch source, on Lightning Fabric (the linear closed-form ensembles keep their own loop, train/linear.py).

Per update k (App. C Table 2 defaults: Adam lr 3e-4, batch 128, global-norm clip 5.0):

    batch   = next(source.batches(start))        global batch of update k (data/sampling.py);
                                                 with N processes, rank r takes rows [r B/N, (r+1) B/N)
    loss    = objective(model, batch)            e.g. L_LAM + lam_xexo L_X-exo (Eq. 5 + Eq. 16)
    grads   = d loss / d params                  averaged over ranks by DDP = the global batch's gradient
    clip ||grads||_2 to grad_clip; Adam step; hooks(k + 1, model)   (e.g. an EMA target encoder, App. D)

The same code runs on 1 CPU, N CPU processes (gloo DDP), 1 GPU and N GPUs (NCCL), and under
`torchrun` or SLURM (Fabric reads their environment): `devices`, `strategy` and `precision`
("32" or "bf16-mixed": forward under autocast, fp32 master weights and Adam state) choose it.
`precision="auto"` is bf16-mixed only on a CPU that computes bf16 natively (avx512_bf16 / AMX;
emulated bf16 on an AVX2-only CPU is ~15x slower) and fp32 elsewhere, CUDA included (the small
LAMs of the paper gain nothing from bf16 there).

Resume. Every `save_every` updates (and at the end) the model, the objective's heads, Adam, the
step, the loss accumulator and every RNG go to the checkpoint folder (models/checkpoint.py). A run
started again with the same `spec` continues from it and, because the minibatch stream is a
function of (seed, step) alone, ends bit-identical on CPU fp32 to a run never interrupted. A
checkpoint written by another spec is refused, not overwritten.

Metrics: `metrics.jsonl` gets {"step", "loss", per-term parts} every `log_every` updates (rank 0;
lines beyond the resumed step are dropped on resume). Progress on rank 0: a tqdm bar with the loss,
updates/s and the ETA when stderr is a terminal; otherwise, with `progress_every` N, one stderr line
every N updates (the logs of a SLURM job), or nothing (a sweep's workers: the sweep reports rows).

`train_or_resume` is the one place that decides, for one model in one checkpoint folder, whether it
is finished, resumes, or belongs to another run, and runs `fit` in this process or in N.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
from torch import nn

from exolam.data.transitions import Transitions
from exolam.errors import ConfigError, check_positive_int, check_range
from exolam.models import checkpoint
from exolam.objectives import Objective, format_objective
from exolam.runs import progress
from exolam.runs.files import to_jsonable
from exolam.runs.launch import launched_externally

PRECISIONS = ("auto", "32", "bf16-mixed")
STRATEGIES = ("auto", "ddp", "ddp_spawn")


@dataclasses.dataclass
class TrainConfig:
    """The engine's settings; defaults are App. C Table 2 (the lambdas live in the objective string)."""

    steps: int = 16_000
    """Adam updates"""
    batch_size: int = 128
    """global batch (split across devices)"""
    lr: float = 3e-4
    """Adam learning rate"""
    grad_clip: float = 5.0
    """max global gradient norm"""
    precision: Literal["auto", "32", "bf16-mixed"] = "auto"
    """32, bf16-mixed (autocast forward, fp32 weights), or auto: bf16-mixed on a CPU with native bf16"""
    devices: int = 1
    """processes (CPU) or GPUs per model"""
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    """auto: one device, or ddp_spawn for several (ddp under torchrun / SLURM)"""
    save_every: int = 1000
    """updates between resumable checkpoints"""
    log_every: int = 100
    """updates between metrics.jsonl lines (0: none)"""

    def validate(self, prefix: str = "train") -> "TrainConfig":
        for name in ("steps", "batch_size", "devices", "save_every"):
            check_positive_int(f"{prefix}.{name}", getattr(self, name))
        if isinstance(self.log_every, bool) or not isinstance(self.log_every, int) or self.log_every < 0:
            raise ConfigError(f"{prefix}.log_every = {self.log_every!r} must be an integer >= 0")
        check_range(f"{prefix}.lr", self.lr, 0.0, None, lo_open=True)
        check_range(f"{prefix}.grad_clip", self.grad_clip, 0.0, None, lo_open=True)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{prefix}.precision = {self.precision!r} must be one of {', '.join(PRECISIONS)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"{prefix}.strategy = {self.strategy!r} must be one of {', '.join(STRATEGIES)}")
        if self.batch_size % self.devices:
            raise ConfigError(f"{prefix}.batch_size = {self.batch_size} must be divisible by {prefix}.devices = "
                              f"{self.devices} (each process takes an equal slice of the global batch)")
        return self


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX), from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """`auto` -> bf16-mixed on a CPU with native bf16, 32 elsewhere (CUDA included); others unchanged."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if torch.device(device).type == "cpu" and native_bf16_cpu() else "32"


def available_bytes(device: str = "cpu") -> int | None:
    """Memory a new model could take: free memory of a CUDA device, else the host's MemAvailable
    (None where neither can be read)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(build: Callable[[], nn.Module], batch_size: int, in_shape: tuple[int, ...], device: str = "cpu",
                 what: str = "the model", fix: str = "lower the image size, the widths or the batch size",
                 activations: bool = True) -> None:
    """Refuse, before anything is allocated or written, a model whose training clearly cannot fit in memory.

    `build()` runs on the meta device (shapes only, no memory): trainable parameters cost 16 bytes
    (fp32 weight, gradient, two Adam moments), frozen ones 4; one sample's layer outputs, measured by
    a meta forward of encode + decode on `in_shape` (C, H, W), cost 8 bytes a value per sample (kept
    for backward, and their gradients; `activations=False` skips that forward, e.g. for a model that
    moves a pretrained encoder it holds to its input's device). A lower bound of the true need, so
    only hopeless runs are refused.
    """
    with torch.device("meta"):
        model = build()
    params = sum(p.numel() * (16 if p.requires_grad else 4) for p in model.parameters())
    acts = _activations(model, in_shape) if activations else 0
    need, have = params + 8 * acts * batch_size, available_bytes(device)
    if have is not None and need > have:
        raise ConfigError(f"{what} needs at least {need / 2**30:.1f} GiB to train ({params / 16 / 1e6:.1f} M "
                          f"parameter-equivalents, {acts / 1e6:.1f} M activations per sample x batch {batch_size}), "
                          f"more than the {have / 2**30:.1f} GiB available on {device}; {fix}")


def _activations(model: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Values the leaf layers of a meta-device `model` output for one sample (encode + decode); 0 where a
    layer has no meta kernel."""
    seen = 0

    def count(_m, _i, out):
        nonlocal seen
        seen += sum(x.numel() for x in (out if isinstance(out, (tuple, list)) else [out]) if torch.is_tensor(x))

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.device("meta"), torch.no_grad():
            o = torch.empty(1, *in_shape)
            model.decode(o, model.encode(o, o))
    except (RuntimeError, NotImplementedError, TypeError, AttributeError):
        return 0
    finally:
        for h in hooks:
            h.remove()
    return seen


def make_fabric(cfg: TrainConfig, device: str = "cpu"):
    """The Fabric of a run: accelerator from `device` ("cpu", "cuda", "cuda:i"), the rest from cfg."""
    from lightning_fabric import Fabric

    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    dev = torch.device(device)
    devices = [dev.index] if dev.type == "cuda" and dev.index is not None and cfg.devices == 1 else cfg.devices
    strategy = cfg.strategy
    if strategy == "auto" and cfg.devices > 1:
        strategy = "ddp" if launched_externally() else "ddp_spawn"
    precision = {"32": "32-true"}.get(resolve_precision(cfg.precision, device), "bf16-mixed")
    return Fabric(accelerator=dev.type, devices=devices, strategy=strategy, precision=precision)


def launch(fabric, fn: Callable, *args):
    """Run `fn(fabric, *args)` on every process of `fabric` (spawning them for ddp_spawn); rank 0's
    return value. Each process tears its process group down before it exits (a gloo group left to
    interpreter shutdown can abort the process)."""
    return fabric.launch(_run_then_teardown, fn, *args)


def _run_then_teardown(fabric, fn: Callable, *args):
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    if fabric.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return fn(fabric, *args)
    finally:  # a group torchrun / SLURM set up stays for the next run of this process
        if torch.distributed.is_available() and torch.distributed.is_initialized() and not launched_externally():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


class Trainee(nn.Module):
    """The model and the objective's heads as one module, so DDP averages all their gradients."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, held: "_Held"):
        return self.objective(self.model, held.batch)


class _Held:
    """A batch handed to the Fabric-wrapped forward in a holder its precision plugin does not open:
    bf16-mixed would cast every float input to bf16 (targets included); this way the batch stays
    fp32 and autocast alone chooses the ops that run in bf16, as a plain autocast loop does."""

    __slots__ = ("batch",)

    def __init__(self, batch: Transitions):
        self.batch = batch


@dataclasses.dataclass
class FitResult:
    loss_train: float
    """mean total loss over the last 1 % of updates (all ranks)"""
    seconds: float
    """wall time of the updates run by this call"""
    start: int
    """the update this call started from (> 0 when resumed)"""


Hook = Callable[[int, nn.Module], None]


def fit(fabric, model: nn.Module, objective: Objective, source, cfg: TrainConfig, *, spec: dict,
        ckpt: str | Path | None = None, hooks: Sequence[Hook] = (), metrics: str | Path | None = None,
        desc: str = "train", lr_flag: str = "--train.lr", progress_every: int = 0) -> FitResult:
    """Train `model` with `objective` on `source` for cfg.steps updates (resuming from `ckpt`).

    `spec`: JSON-able identity of the run (what determines its weights); a checkpoint whose spec
    differs is refused. `lr_flag`: how the calling command spells the learning rate, named when training diverges.
    `progress_every`: updates between progress lines when stderr is not a terminal (0: none).
    """
    trainee = Trainee(model, objective)
    opt = torch.optim.Adam(trainee.parameters(), lr=cfg.lr, foreach=True)  # not fused: 6-15x slower on CPU
    trainee, opt = fabric.setup(trainee, opt)
    ckpt = None if ckpt is None else checkpoint.resolve(ckpt)
    start, acc = 0, torch.zeros((), device=fabric.device)
    tail_from = cfg.steps - max(1, cfg.steps // 100)
    if ckpt is not None and ckpt.exists():
        start, acc, target = _resume(ckpt, spec, model, objective, opt, fabric)
        if target != cfg.steps:  # a run extended to more updates: its old tail is not this one's
            acc, tail_from = torch.zeros_like(acc), max(tail_from, start)
    rank0 = fabric.global_rank == 0
    log = progress.MetricsLog(metrics, start) if metrics is not None and rank0 else None
    bar = progress.bar(cfg.steps, start, desc, show=rank0, every=progress_every, unit="upd")
    world, rank = fabric.world_size, fabric.global_rank
    local = cfg.batch_size // world
    t0 = time.perf_counter()
    for step, batch in zip(range(start, cfg.steps), source.batches(start)):
        if world > 1:
            batch = batch.index(slice(rank * local, (rank + 1) * local))
        loss, parts = trainee(_Held(batch.to(fabric.device)))
        opt.zero_grad(set_to_none=True)
        fabric.backward(loss)
        try:
            fabric.clip_gradients(trainee, opt, max_norm=cfg.grad_clip)
        except RuntimeError as e:
            if "non-finite" not in str(e):
                raise
            raise ConfigError(f"{lr_flag.lstrip('-')} = {cfg.lr:g}: training diverged (non-finite gradients at update "
                              f"{step + 1}); lower {lr_flag}") from None
        opt.step()
        for hook in hooks:
            hook(step + 1, model)
        if step >= tail_from:
            acc += loss.detach().float()
        done = step + 1
        if log is not None and cfg.log_every and done % cfg.log_every == 0:
            log.write({"step": done, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}})
        if ckpt is not None and done % cfg.save_every == 0 and done < cfg.steps:
            save(fabric, ckpt, model, objective, opt, spec, cfg, source, done, acc)
        if bar is not None:
            bar.update(1)
            if done % 10 == 0 or done == cfg.steps:
                bar.set_postfix(loss=f"{float(loss.detach()):.4g}", refresh=False)
    seconds = time.perf_counter() - t0
    bar is not None and bar.close()
    loss_train = float(fabric.all_reduce(acc, reduce_op="mean")) / max(1, cfg.steps - tail_from)
    if not math.isfinite(loss_train):
        raise ConfigError(f"{lr_flag.lstrip('-')} = {cfg.lr:g}: training diverged (non-finite loss {loss_train}); "
                          f"lower {lr_flag}")
    if ckpt is not None and start < cfg.steps:  # the finished checkpoint: it carries loss_train
        save(fabric, ckpt, model, objective, opt, spec, cfg, source, cfg.steps, acc,
             {"loss_train": loss_train, "train_seconds": seconds, "resumed_from": start,
              "updates_per_s": (cfg.steps - start) / max(seconds, 1e-9)})
    return FitResult(loss_train, seconds, start)


def checkpoint_state(ckpt: str | Path, spec: dict, steps: int, other: str | None = None) -> str:
    """'new', 'partial' or 'finished' (ran to `steps`, its loss_train recorded) for the checkpoint folder
    `ckpt` of a run with `spec`; a checkpoint of another spec is refused with one line (`other`, if given),
    and one already past `steps` too (a run is extended, never cut short)."""
    ckpt = checkpoint.resolve(ckpt)
    if not ckpt.exists():
        return "new"
    meta = _same_spec(ckpt, spec, other)
    if int(meta.get("step", 0)) > steps:
        raise ConfigError(f"checkpoint {ckpt}: trained for {meta.get('step')} updates, more than the {steps} asked "
                          "(a run is extended, never cut short); ask for at least that many or choose another --out")
    return "finished" if meta.get("step") == steps and "loss_train" in meta else "partial"


def train_or_resume(cfg: TrainConfig, device: str, ckpt: str | Path, spec: dict, fit_one: Callable, *args):
    """Train one model to `cfg.steps` updates in the checkpoint folder `ckpt`: the one place that decides.

    A checkpoint of another `spec` is refused before anything runs (`checkpoint_state`); then
    `fit_one(fabric, *args)` (a module-level function that builds the model, objective and source and
    calls `fit` with this spec and ckpt) runs on the Fabric of `cfg`: in this process, returning what it
    returns (on a finished checkpoint `fit` loads it and trains nothing), or, with `cfg.devices > 1`, in
    N processes of which rank 0 writes the checkpoint (none when it is finished already), returning
    None: tensors do not outlive the workers, so the caller loads the checkpoint.
    """
    state = checkpoint_state(ckpt, spec, cfg.steps)
    fabric = make_fabric(cfg, device)
    if cfg.devices > 1:
        if state != "finished":
            launch(fabric, fit_one, *args)
        return None
    return fit_one(fabric, *args)


def save(fabric, ckpt: Path, model, objective, opt, spec: dict, cfg: TrainConfig, source, step: int,
         acc: torch.Tensor, extra: dict | None = None) -> None:
    """Write the resumable checkpoint of update `step` (rank 0 writes, every rank waits)."""
    if fabric.global_rank == 0:
        meta = {"spec": spec, "step": step, "steps": cfg.steps, "objective": format_objective(objective.terms),
                "target_dims": objective.target_dims, "data": source.spec(),
                "train": to_jsonable(cfg), **(extra or {})}
        checkpoint.write(ckpt, meta, model, {"objective": objective, "optimizer": opt,
                                             "state": {"step": step, "loss_tail_sum": float(acc)}})
    fabric.barrier()


def _same_spec(ckpt: Path, spec: dict, other: str | None = None) -> dict:
    """config.json of checkpoint `ckpt`, refused (one line, `other` if given) unless a run of `spec` wrote it.
    The number of updates is not part of a run's identity: the minibatch stream of a longer run begins
    with a shorter one's (data/sampling.py), so a finished run extended to more updates is that longer run."""
    meta = checkpoint.read_config(ckpt)
    if _but_steps(meta.get("spec")) != _but_steps(json.loads(json.dumps(spec))):
        raise ConfigError(other or f"checkpoint {ckpt}: written by another run (its spec differs from this one's); "
                          "remove it or choose another --out")
    return meta


def _resume(ckpt: Path, spec: dict, model, objective, opt, fabric) -> tuple[int, torch.Tensor, int]:
    """(step, tail loss sum, the update count it was trained towards) of checkpoint `ckpt`, loaded."""
    meta = _same_spec(ckpt, spec)
    checkpoint.load_state(model, ckpt / "model.safetensors", ckpt, type(model).__name__)
    state = checkpoint.read_training(ckpt, objective, opt)
    return (int(state["step"]), torch.tensor(state["loss_tail_sum"], dtype=torch.float32, device=fabric.device),
            int(meta.get("steps", state["step"])))


def _but_steps(spec):
    """`spec` without its train.steps (see `_same_spec`)."""
    if isinstance(spec, dict) and isinstance(spec.get("train"), dict):
        return {**spec, "train": {k: v for k, v in spec["train"].items() if k != "steps"}}
    return spec
