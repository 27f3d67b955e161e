"""`exolam train`: a LAM (LAPO-style of App. D, or the VQ LAM of Sec. 5) on the video of any LeRobot dataset.

    windows  (o_t, o_{t+k}) of one camera, never crossing an episode (data/windows.py), resized to
             image_size x image_size, k = frame_gap; left out, image_size, frame_gap, the widths and
             the engine's settings are `workflows/defaults.py`'s (sized to learn on 2 CPU cores; the
             frame gap measured on the data), printed on the start line with their reasons
    model    lapo: `LapoLAMConfig` defaults (d_z 8) with frame = image_size, on pixels, the jointly
             trained EMA encoder (`--encoder ema`), or the features of a frozen pretrained encoder
             (`--encoder SPEC`, below);
             vq:   `VQLAMConfig` defaults (Table 2: d_z 32, K 5) with frame = image_size
    loss     the objective string (objectives.py): lam [+xexo:w] [+robust-action:w] [+robust-flow:w];
             xexo needs the paired view `<camera>_alt`, or `--paired-view augment[:color=C,shift=P,
             switch=Q]` to draw one by a colour / camera augmentation (data/augment.py); robust-action
             the feature `action` (data/fields.py); robust-flow computes DIS flow of (o, o') in the
             data workers
    engine   train/engine.py `fit` on Lightning Fabric (1 CPU .. N GPUs), Adam, clip 5

OUT/ holds `checkpoint/` (model.safetensors + config.json, `exolam.load(OUT/checkpoint)`; resumable:
the same command run again continues from it, a different config is refused), `metrics.jsonl`
(loss every log_every updates) and `train.json` (the resolved config: dataset root, camera, image
size, channels, frame gap, d_z, model class); and `features/<camera>/`: every frame decoded and resized
once (float32, exactly what decoding gives; up to MAX_FRAME_CACHE) or, with a frozen encoder, f(I) of
every frame (float16) (data/features.py), which training reads instead of decoding (and running f on)
two frames per window at every update (`--no-cache-features` decodes instead). The checkpoint's spec carries `input` = {camera,
image_size, channels, stored_shape, frame_gap}: what `exolam label` / `diagnose` check a dataset against.

Label fraction (robust-action only, App. D / LAOM): round(f * episodes) whole episodes, drawn by the
seed, carry labels; f = 1 uses every label (or the dataset's own `action_is_labeled` mask).
Frozen encoders (`--encoder SPEC`, lapo only): any models/encoders.py spec giving a spatial feature map:
`efficientnet-lite0`, `hf:PATH` (DINOv2 patch features, as UniVLA), `timm:ARCH:PATH`, `ema:CKPT` (the
f_EMA of an earlier `--encoder ema` run, reused frozen). The LAM reads P f(I) (P a trained 1x1 conv to
proj_channels 64) and its FDM predicts f(I') itself (models/lapo.py, encoder "frozen"). The encoder is
loaded once here to check it (a pooled / CLS vector, `:pooled` / `:cls`, is refused: the IDM and FDM are
convolutional); the checkpoint stores its absolute spec and weights hash, never its weights, so
`exolam.load` / `exolam label` rebuild it from the same local path. Frames are still resized to
image_size first, then by the encoder to its own input size (224 for EfficientNet and DINOv2), so a
small --image-size loses detail the encoder could have used.
The VQ LAM (built for 4x4 grid-world frames) flattens full-resolution IDM features into its MLP
(128 * S^2 * 64 weights), so it is refused above MAX_VQ_SIZE pixels; its UNet needs an even size.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from exolam.data.augment import PairedAugment
from exolam.data.features import CachedFeatures, Frames, cache_features
from exolam.data.fields import ACTION, LABEL, camera_key, lam_fields, stored_shape
from exolam.data.lerobot import LeRobotDataset, open_dataset
from exolam.data.sampling import labelled_episodes
from exolam.data.windows import WindowDataset, WindowSource, collate
from exolam.errors import ConfigError, check_positive_int, check_range
from exolam.models import checkpoint
from exolam.models.checkpoint import OWN_LAM as KIND
from exolam.models.encoders import Cached, load_encoder
from exolam.models.lapo import LapoLAM, LapoLAMConfig, ema_hook, frozen_feature_shape
from exolam.models.vq import VQLAM, VQLAMConfig
from exolam.objectives import Objective, format_objective, parse_objective
from exolam.runs.files import atomic_write, to_jsonable
from exolam.runs.launch import launched_externally
from exolam.runs.outdir import check_outside, claim
from exolam.train import engine
from exolam.train.engine import TrainConfig, check_memory
from exolam.workflows import defaults
from exolam.workflows.defaults import OWN_TRAIN
from exolam.workflows.guards import Guard

MODELS = ("lapo", "vq")
GUARD_WINDOWS = 256  # windows the guards measure on (a fixed sample of the training windows)
MAX_VQ_SIZE = 64
MAX_FRAME_CACHE = 2 << 30  # bytes: pixels train on decoded frames cached once (float32) up to this size
FROZEN_ONLY = ("encoder_spec", "proj_channels", "encoder_fingerprint")  # LapoLAMConfig fields of encoder "frozen"


@dataclasses.dataclass
class TrainOwnConfig:
    """Train (or resume) a latent action model on a LeRobot dataset's video."""

    data: str
    """LeRobot dataset folder (v3.0 or v2.1; read only)"""
    out: str
    """run folder: checkpoint/, metrics.jsonl, train.json"""
    camera: str | None = None
    """video feature to train on; None: the dataset's first"""
    image_size: int | None = None
    """frames are resized to image_size x image_size; None: min(32, the stored side) (workflows/defaults.py)"""
    frame_gap: int | None = None
    """k: the IDM sees (o_t, o_{t+k}); None: chosen from the data's frame change (workflows/defaults.py)"""
    model: Literal["lapo", "vq"] = "lapo"
    """lapo: the conv LAM of App. D (continuous z); vq: the VQ LAM of Sec. 5 (App. C Table 2)"""
    encoder: str | None = None
    """lapo only: pixels (default), ema, or a frozen encoder: efficientnet-lite0, hf:PATH, timm:ARCH:PATH, ema:CKPT"""
    proj_channels: int | None = None
    """frozen --encoder only: the trained 1x1 projection of its features that the IDM/FDM read; None: 64"""
    objective: str = "lam"
    """lam[+xexo:w][+robust-action:w][+robust-flow:w] (objectives.py)"""
    label_fraction: float = 1.0
    """robust-action only: fraction of episodes whose actions are used"""
    paired_view: str | None = None
    """xexo only: augment[:color=C,shift=P,switch=Q] draws the paired view by augmentation (else <camera>_alt)"""
    codebook_update: Literal["ema", "loss"] | None = None
    """vq only: the codebook follows an EMA of its inputs (default) or learns by the VQ-VAE loss"""
    d_z: int | None = None
    """latent action dim; None: lapo 8, vq 32"""
    idm_channels: tuple[int, ...] | None = None
    """IDM conv widths; None: lapo (32, 64, 64), vq the model's (App. C Table 2)"""
    fdm_channels: tuple[int, ...] | None = None
    """FDM UNet widths (vq: exactly 4); None: lapo (16, 32, 64), vq the model's"""
    seed: int = 0
    """initial weights, batch order, labelled episodes and augmentations"""
    device: Literal["cpu", "cuda"] = "cpu"
    """where the model trains"""
    num_workers: int = 0
    """DataLoader worker processes decoding video"""
    guard_every: int = 500
    """updates between the guards (is a latent action being learned? workflows/guards.py); 0: none"""
    stop_if_degenerate: bool = False
    """end training (exit code 3) when a guard after a quarter of the updates finds the LAM degenerate"""
    cache_features: bool = True
    """decode (and with a frozen --encoder, encode) every frame once into OUT/features and train on that,
    not on frames decoded at every update; not with robust-flow or --paired-view augment, under
    torchrun / SLURM, or where the cache would exceed 2 GiB"""
    train: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(OWN_TRAIN))
    """the engine's settings, spelled as in `exolam reproduce` (--train.steps, --train.lr, ...); defaults
    sized to learn on 2 CPU cores in ~10 min (workflows/defaults.py): 5,000 updates, batch 32, lr 1e-3"""

    def validate(self) -> "TrainOwnConfig":
        for name in ("data", "out"):
            if not getattr(self, name):
                raise ConfigError(f"--{name} is required (a folder)")
        for name in ("image_size", "frame_gap"):
            if getattr(self, name) is not None:
                check_positive_int(f"--{name.replace('_', '-')}", getattr(self, name))
        for name in ("seed", "num_workers", "guard_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"--{name.replace('_', '-')} = {v!r} must be an integer >= 0")
        self.train.validate("--train")
        check_range("--label-fraction", self.label_fraction, 0.0, 1.0, lo_open=True)
        if self.model not in MODELS:
            raise ConfigError(f"--model = {self.model!r} must be one of {', '.join(MODELS)}")
        if self.encoder is not None and self.model != "lapo":
            raise ConfigError(f"--encoder applies to --model lapo only (the {self.model} LAM reads pixels)")
        if self.encoder is not None and (not isinstance(self.encoder, str) or not self.encoder.strip()):
            raise ConfigError(f"--encoder = {self.encoder!r} must be pixels, ema or a frozen encoder spec "
                              "(efficientnet-lite0, hf:PATH, timm:ARCH:PATH, ema:CKPT)")
        if self.encoder is not None and self.encoder.strip().rpartition(":")[2] in ("pooled", "cls"):
            raise ConfigError(f"--encoder = {self.encoder!r} gives one feature vector per frame; the lapo LAM's conv "
                              "IDM/FDM need a spatial feature map (drop ':pooled' / ':cls')")
        if self.codebook_update is not None and self.model != "vq":
            raise ConfigError(f"--codebook-update applies to --model vq only (the {self.model} LAM has no codebook)")
        if self.proj_channels is not None:
            check_positive_int("--proj-channels", self.proj_channels)
            if (self.encoder or "pixels").strip() in ("pixels", "ema"):
                raise ConfigError("--proj-channels applies only with a frozen --encoder (efficientnet-lite0, hf:PATH, "
                                  "timm:ARCH:PATH, ema:CKPT)")
        terms = {t.name for t in parse_objective(self.objective, "--objective")}
        if "robust-q" in terms:
            raise ConfigError("--objective robust-q needs the controllable change q, which only the simulated "
                              "generators know; use robust-action or robust-flow on recorded video")
        if self.paired_view is not None:
            PairedAugment.parse(self.paired_view)
            if "xexo" not in terms:
                raise ConfigError(f"--paired-view applies only with xexo in --objective ({self.objective!r} uses no "
                                  "paired view)")
        if self.label_fraction != 1.0 and "robust-action" not in terms:
            raise ConfigError(f"--label-fraction = {self.label_fraction:g} applies only with robust-action in "
                              f"--objective ({self.objective!r} uses no labels)")
        if self.image_size is not None:
            self.check_vq_size()
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available here")
        return self

    def check_vq_size(self) -> None:
        if self.model == "vq" and (self.image_size % 2 or self.image_size > MAX_VQ_SIZE):
            raise ConfigError(f"--image-size = {self.image_size}: the vq LAM needs an even size <= {MAX_VQ_SIZE} "
                              "(its UNet halves the frame; its IDM flattens full-resolution features into an "
                              "MLP, 128 * S^2 * 64 weights); use --model lapo for larger frames")


@dataclasses.dataclass
class Plan:
    """Everything a training process builds from a `TrainOwnConfig` (cheap; rebuilt by every DDP rank)."""

    cfg: TrainOwnConfig
    ds: LeRobotDataset
    camera: str
    fields: dict
    labelled: list[int] | None
    model_cfg: object
    objective: str
    target_dims: dict
    input: dict
    encoder: object = None  # the frozen pretrained encoder (lapo, encoder "frozen"), loaded once by `plan`
    paired_view: PairedAugment | None = None  # --paired-view augment: o_alt drawn by augmentation
    cache: dict = dataclasses.field(default_factory=dict)  # camera key -> its cache folder (frames or frozen f)
    chosen: list = dataclasses.field(default_factory=list)  # the defaults resolved from the data, with reasons

    def model(self) -> torch.nn.Module:
        torch.manual_seed(self.cfg.seed)
        if self.cfg.model == "vq":
            return VQLAM(self.model_cfg)
        return LapoLAM(self.model_cfg, encoder=Cached(self.encoder) if self.cache and self.encoder else self.encoder)

    def source(self, cached: bool = True) -> WindowSource:
        """The training windows; `cached=False`: frames even where a feature cache is planned (before it exists)."""
        c = self.cfg
        wd = WindowDataset(self.ds, self.fields, frame_gap=c.frame_gap, image_size=c.image_size,
                           labelled_episodes=self.labelled, flow="robust-flow" in self.objective,
                           paired_view=self.paired_view,
                           features={key: CachedFeatures(path) for key, path in self.cache.items() if cached})
        return WindowSource(wd, c.seed, c.train.steps, c.train.batch_size, num_workers=c.num_workers, device=c.device)

    def spec(self) -> dict:
        """The run's identity: a checkpoint written under another spec is refused, not resumed."""
        model = to_jsonable(self.model_cfg)
        if model.get("encoder", "frozen") != "frozen":  # frozen-only fields: pixels/ema specs stay as before them
            model = {k: v for k, v in model.items() if k not in FROZEN_ONLY}
        data = {"root": str(self.ds.root.resolve()), "fields": self.fields, "labelled_episodes": self.labelled}
        if self.paired_view is not None:  # absent otherwise: specs of runs without it stay as they were
            data["paired_view"] = self.paired_view.spec()
        return {"kind": KIND, "input": self.input, "model": {"class": self.cfg.model, "config": model},
                "objective": self.objective, "data": data,
                "train": {k: v for k, v in to_jsonable(self.cfg.train).items()
                          if k not in ("save_every", "log_every")}, "seed": self.cfg.seed, "device": self.cfg.device}


def plan(cfg: TrainOwnConfig) -> Plan:
    """Open the dataset and resolve the camera, fields, model config and objective; bad input -> one line."""
    ds = open_dataset(cfg.data)
    camera = camera_key(ds, cfg.camera)
    h, w, c = stored_shape(ds, camera)
    if camera not in ds.video_keys and (h, w) != (cfg.image_size or h,) * 2:  # left out: the stored size
        raise ConfigError(f"--image-size = {cfg.image_size}: camera '{camera}' is a numeric feature of {h}x{w} "
                          f"frames, which are not resized; use --image-size {h}" if h == w else
                          f"camera '{camera}' is a numeric feature of non-square {h}x{w} frames")
    cfg, chosen = defaults.resolve(cfg, ds, camera, (h, w, c), camera in ds.video_keys)
    cfg.check_vq_size()
    if cfg.model == "vq" and c not in (1, 3):
        raise ConfigError(f"camera '{camera}' has {c} channels; the vq LAM is built for 1 or 3")
    terms = parse_objective(cfg.objective, "--objective")
    names = {t.name for t in terms}
    paired_view = None if cfg.paired_view is None else PairedAugment.parse(cfg.paired_view, cfg.seed)
    fields = lam_fields(ds, camera, paired="xexo" in names and paired_view is None, action="robust-action" in names,
                        what=f"--objective {cfg.objective}")
    if paired_view is not None:  # checked here, before train.json is written (the loader checks it again)
        paired_view.check_camera(ds.video_keys, camera)
    labelled = None
    if "robust-action" in names and cfg.label_fraction < 1.0:
        if LABEL in fields.values():
            raise ConfigError(f"--label-fraction: {ds.root} marks its labelled frames itself ('{LABEL}'); drop "
                              "--label-fraction")
        labelled = labelled_episodes(len(ds.episode_lengths), cfg.label_fraction, cfg.seed)
    target_dims = {}
    if "robust-action" in names:
        target_dims["action"] = _action_dim(ds)
    if "robust-flow" in names:
        from exolam.data.flow import flow_dim

        target_dims["flow"] = flow_dim()
    encoder = None
    if cfg.model == "lapo":
        space = (cfg.encoder or "pixels").strip()
        extra = {"encoder": space} if space in ("pixels", "ema") else {}
        if not extra:  # a frozen pretrained encoder: loaded (and its map shape checked) before any output
            encoder = load_encoder(space)
            frozen_feature_shape(encoder, cfg.image_size, c)
            extra = {"encoder": "frozen", "encoder_spec": encoder.name, "encoder_fingerprint": encoder.fingerprint}
            if cfg.proj_channels is not None:
                extra["proj_channels"] = cfg.proj_channels
        model_cfg = _sized(LapoLAMConfig(), cfg, in_channels=c, image_size=cfg.image_size, **extra)
    else:
        model_cfg = _sized(VQLAMConfig(), cfg, in_channels=c, image_size=cfg.image_size)
    inp = {"camera": camera, "image_size": cfg.image_size, "channels": c, "stored_shape": [h, w, c],
           "frame_gap": cfg.frame_gap}
    cache = {}
    keys = [key for key in (fields["o"], fields.get("o_alt")) if key]
    frames = encoder is None and all(key in ds.video_keys for key in keys) \
        and sum(ds.episode_lengths) * len(keys) * c * cfg.image_size ** 2 * 4 <= MAX_FRAME_CACHE
    if (encoder is not None or frames) and cfg.cache_features and "robust-flow" not in names \
            and paired_view is None and not launched_externally():
        cache = {key: Path(cfg.out) / "features" / key for key in keys}
    return Plan(cfg, ds, camera, fields, labelled, model_cfg, format_objective(terms), target_dims, inp, encoder,
                paired_view, cache, chosen)


def _sized(model_cfg, cfg: TrainOwnConfig, **fixed):
    sizes = {k: getattr(cfg, k) for k in ("d_z", "idm_channels", "fdm_channels", "codebook_update")
             if getattr(cfg, k) is not None}
    try:
        return dataclasses.replace(model_cfg, **fixed, **{k: tuple(v) if isinstance(v, (list, tuple)) else v
                                                          for k, v in sizes.items()}).validate()
    except ConfigError as e:
        raise ConfigError(str(e).replace("model.", "--").replace("_", "-")) from None


def _action_dim(ds: LeRobotDataset) -> int:
    ft = ds.features[ACTION]
    if np.dtype(ft["dtype"]).kind == "f":
        return math.prod(ft["shape"])
    if list(ft["shape"]) != [1]:
        raise ConfigError(f"{ds.root}: integer '{ACTION}' of shape {ft['shape']}: robust-action takes float "
                          "actions or one discrete index per frame")
    return int(max(ds.column(ACTION, e).max() for e in range(len(ds.episode_lengths)))) + 1


def resolved(p: Plan) -> dict:
    """train.json: the config with every default resolved."""
    model_cls = LapoLAM if p.cfg.model == "lapo" else VQLAM
    return {**to_jsonable(p.cfg), "data": str(p.ds.root.resolve()), "camera": p.camera, "fields": p.fields,
            "image_size": p.cfg.image_size, "channels": p.input["channels"], "frame_gap": p.cfg.frame_gap,
            "d_z": p.model_cfg.d_z, "objective": p.objective, "target_dims": p.target_dims,
            "labelled_episodes": p.labelled, "model_class": f"{model_cls.__module__}.{model_cls.__name__}",
            "model_config": to_jsonable(p.model_cfg), "checkpoint": "checkpoint"}


def train_own(cfg: TrainOwnConfig, log=print) -> Path:
    """Train (or resume, or find finished) the LAM of `cfg`; returns the checkpoint folder OUT/checkpoint.

    Every input is checked before OUT is touched (the dataset, its windows, the encoder, whether the
    model can fit in memory); OUT is claimed (`outdir.claim`: refused inside the dataset or while
    another process trains into it) and rolled back if training fails before a checkpoint exists or
    diverges, so a refusal leaves nothing and a rerun with another --lr starts clean."""
    cfg.validate()
    out = Path(cfg.out)
    check_outside(out, {"--data": cfg.data})  # before the dataset and encoder are opened
    p = plan(cfg)
    cfg = p.cfg  # with the defaults resolved from the data
    p.source(cached=False)  # its windows exist: every episode shorter than the frame gap is refused here
    shape = (p.input["channels"], cfg.image_size, cfg.image_size)
    check_memory(p.model, cfg.train.batch_size // (cfg.train.devices if cfg.device == "cuda" else 1), shape, cfg.device,
                 f"the {cfg.model} LAM at --image-size {cfg.image_size}",
                 "lower --image-size, --train.batch-size or the widths (--idm-channels, --fdm-channels)",
                 activations=p.encoder is None)  # a frozen f would follow the meta input to the meta device
    spec = json.loads(json.dumps(p.spec()))
    encoder = {"--encoder": getattr(p.encoder, "path", None)}  # --data: checked above
    with claim(out, encoder, resumable=lambda: (out / "checkpoint").exists() or (out / "features").exists()):
        ckpt = checkpoint.resolve(out / "checkpoint")
        other = (f"{out}: holds a run with another config (see {out / 'train.json'}); choose another --out, or "
                 "rerun with that config to resume it")
        if engine.checkpoint_state(ckpt, spec, cfg.train.steps, other) == "finished":
            log(f"[train] {ckpt}: already finished ({cfg.train.steps} updates)")
            return ckpt
        out.mkdir(exist_ok=True)
        atomic_write(out / "train.json", json.dumps(resolved(p), indent=2) + "\n")
        on = "" if p.encoder is None else \
            f" on frozen {p.encoder.name} features {list(p.encoder.out_shape_for(cfg.image_size, p.input['channels']))}"
        log(f"[train] {cfg.model} LAM (d_z {p.model_cfg.d_z}){on} on '{p.camera}' of {p.ds.root} ({p.objective}, "
            f"{cfg.image_size}px, frame gap {cfg.frame_gap}, {cfg.train.steps} updates of batch {cfg.train.batch_size}, "
            f"lr {cfg.train.lr:g}) -> {ckpt}")
        if p.chosen:
            log("[train] chosen from the data (set the flag to override): " + "; ".join(p.chosen))
        for key, folder in p.cache.items():  # f(I) once per frame (resumable), instead of twice per window
            t0 = time.perf_counter()
            cache_features(p.encoder or Frames(), p.ds.root, key, folder, cfg.image_size, device=cfg.device,
                           dtype="float16" if p.encoder else "float32")
            log(f"[train] {'f(I)' if p.encoder else 'frames'} of '{key}' cached in {time.perf_counter() - t0:.0f} s "
                f"-> {folder}")
        engine.train_or_resume(cfg.train, cfg.device, ckpt, spec, _fit, cfg, str(ckpt), spec,
                               p if cfg.train.devices == 1 else None)  # N processes rebuild the plan each
    return ckpt


def _fit(fabric, cfg: TrainOwnConfig, ckpt: str, spec: dict, p: Plan | None = None) -> float:
    p = p or plan(cfg)
    model = p.model()
    objective = Objective(p.objective, model.d_z, p.target_dims)
    hooks = [ema_hook] if getattr(model.cfg, "encoder", "pixels") == "ema" else []
    source, out = p.source(), Path(ckpt).parent
    guard = None
    if cfg.guard_every and fabric.world_size == 1:  # one process measures; N would each stop on their own
        windows = source.dataset
        pick = torch.randperm(len(windows), generator=torch.Generator().manual_seed(cfg.seed))[:GUARD_WINDOWS]
        batch = collate([windows[int(i)] for i in sorted(pick.tolist())]).to(fabric.device)
        guard = Guard(batch, cfg.guard_every, cfg.train.steps, out / "metrics.jsonl", cfg.stop_if_degenerate,
                      log=lambda m: print(m, flush=True))
        hooks.append(guard)
    result = engine.fit(fabric, model, objective, source, cfg.train, spec=spec, ckpt=ckpt, hooks=hooks,
                        metrics=out / "metrics.jsonl", desc="train", progress_every=cfg.train.log_every)
    last = guard.finish(out) if guard is not None else None
    if last is not None and fabric.global_rank == 0:  # the checkpoint keeps the last guard's verdict
        meta = json.loads((Path(ckpt) / "config.json").read_text())
        atomic_write(Path(ckpt) / "config.json", json.dumps({**meta, "guard": last}, indent=2) + "\n")
    return result.loss_train
