"""Checkpoint folders: what a trained LAM is, rebuilt from the folder alone (docs/design.md, Commands and files).

    <folder>/
      model.safetensors             the model's state dict (CPU tensors)
      config.json                   {"format": "exolam-checkpoint", "version": 1, "step": k,
                                     "model": {"class": "exolam.models.vq.VQLAM",
                                               "config_class": "exolam.models.vq.VQLAMConfig", "config": {...}},
                                     "objective": "lam+xexo:1", "target_dims": {...}, "data": {...source spec},
                                     "train": {...engine config}, "seed": s, ...caller's extra keys}
      training_state/
        objective.safetensors       the objective's heads W (Eq. 19), if any
        optimizer.safetensors       Adam's moments, flattened as state.<param index>.<name>
        rng.safetensors             torch CPU (and CUDA) generator states
        state.json                  Adam's param groups, the step counters, python/numpy RNG, the loss tail

`exolam.load(folder)` (= `load_model`) rebuilds the model from config.json and model.safetensors;
`checkpoint_input` says what an image LAM was trained on (camera, image size, channels, frame gap)
and `input_camera` checks a dataset against it, the one check `exolam label` and `diagnose` share.
A folder is replaced as a whole: the new one is written next to it under a temporary name, the old
one moved aside, the new one renamed into place, the old one removed; `resolve` finds the last
complete folder if a process was killed between the two renames. Only classes under `exolam.` are
imported (a config.json never names arbitrary code).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from exolam.errors import ConfigError
from exolam.runs.files import current_names, from_jsonable, to_jsonable

FORMAT, VERSION = "exolam-checkpoint", 1


def _qualname(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def model_entry(model: torch.nn.Module) -> dict:
    """The config.json entry that rebuilds `model`: its class and its dataclass config (`model.cfg`)."""
    cfg = getattr(model, "cfg", None)
    if not dataclasses.is_dataclass(cfg):
        raise ConfigError(f"{_qualname(model)}: a checkpointed model keeps its dataclass config in `.cfg`")
    return {"class": _qualname(model), "config_class": _qualname(cfg), "config": to_jsonable(cfg)}


def _import(path: str, folder: Path):
    module, _, name = path.rpartition(".")
    if not module.startswith("exolam."):
        raise ConfigError(f"checkpoint {folder}: config.json names class {path!r} outside exolam; refusing to import it")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"checkpoint {folder}: config.json names class {path!r}, which this exolam does not have "
                          "(written by another version?)") from None


def resolve(folder: str | Path) -> Path:
    """The checkpoint folder to read: `folder`, or the complete copy a killed replacement left aside."""
    folder = Path(folder)
    if not folder.exists() and _aside(folder).exists():
        os.replace(_aside(folder), folder)
    return folder


def in_run(folder: str | Path) -> Path:
    """A checkpoint folder given as itself or as the run folder that holds it as `checkpoint/` (the --out
    of `exolam train`): what `exolam label` and `exolam diagnose` accept as --checkpoint."""
    folder = Path(folder)
    if not (folder / "config.json").exists() and folder.is_dir():
        inner = resolve(folder / "checkpoint")  # a copy a killed replacement left aside is adopted
        if (inner / "config.json").is_file():
            return inner
    return folder


def read_config(folder: str | Path) -> dict:
    """config.json of a checkpoint folder of ours; anything else -> one ConfigError line naming it."""
    folder = resolve(folder)
    if not folder.is_dir():
        raise ConfigError(f"checkpoint {folder}: no such folder")
    for f in ("config.json", "model.safetensors"):
        if not (folder / f).is_file():
            raise ConfigError(f"checkpoint {folder}: missing {f} (not a checkpoint folder, or cut short)")
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"checkpoint {folder}/config.json: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"checkpoint {folder}/config.json: not an exolam checkpoint (no \"format\": \"{FORMAT}\")")
    if meta.get("version") != VERSION:
        raise ConfigError(f"checkpoint {folder}/config.json: format version {meta.get('version')!r}, this exolam "
                          f"reads version {VERSION}")
    return current_names(meta)


def _tensors(path: Path, folder: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"checkpoint {folder}: {path.name} is unreadable ({e})") from None


def load_state(module: torch.nn.Module, path: Path, folder: Path, what: str) -> None:
    """Load a state dict file into `module`; keys or shapes that do not fit -> one ConfigError line."""
    state = _tensors(path, folder)
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or bad:
        detail = "; ".join(x for x in [f"missing {', '.join(missing[:3])}" if missing else "",
                                       f"unexpected {', '.join(extra[:3])}" if extra else "",
                                       f"shape of {bad[0]}: {tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}"
                                       if bad else ""] if x)
        raise ConfigError(f"checkpoint {folder}: {path.name} does not fit the {what} ({detail})")
    module.load_state_dict(state)


def load_model(folder: str | Path) -> torch.nn.Module:
    """`exolam.load`: the model of a checkpoint folder (eval mode, CPU), rebuilt from the folder alone;
    `folder` may also be the run folder of `exolam train` that holds it as `checkpoint/` (as in `label`)."""
    folder = resolve(in_run(folder))
    meta = read_config(folder)
    try:
        entry = meta["model"]
        cls, cfg_cls = _import(entry["class"], folder), _import(entry["config_class"], folder)
        cfg = from_jsonable(cfg_cls, entry["config"])
    except (KeyError, TypeError) as e:
        raise ConfigError(f"checkpoint {folder}/config.json: malformed model entry ({type(e).__name__}: {e})") from None
    if hasattr(cfg, "validate"):
        cfg.validate()
    model = cls(cfg)
    load_state(model, folder / "model.safetensors", folder, f"{cls.__name__} of its config.json")
    return model.eval()


# ---------------------------------------------------------------- writing


def _aside(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def write(folder: str | Path, meta: dict, model: torch.nn.Module, training: dict | None = None) -> None:
    """Write a checkpoint folder as a whole (see the module docstring). `training` (optional) holds
    {"objective": module, "optimizer": torch optimizer, "state": JSON dict}; RNG states are added here."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    for stale in folder.parent.glob(f".{folder.name}.tmp*"):  # left by a writer killed mid-write (one per folder)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.mkdir()
        save_file(_cpu(model.state_dict()), tmp / "model.safetensors")
        if training is not None:
            (tmp / "training_state").mkdir()
            _write_training(tmp / "training_state", training)
        full = {"format": FORMAT, "version": VERSION, **meta, "model": model_entry(model)}
        (tmp / "config.json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        if folder.exists():
            shutil.rmtree(_aside(folder), ignore_errors=True)
            os.replace(folder, _aside(folder))
        os.replace(tmp, folder)
        shutil.rmtree(_aside(folder), ignore_errors=True)
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as SafetensorError
        shutil.rmtree(tmp, ignore_errors=True)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).split(":")[-1].strip() or type(e).__name__
        raise ConfigError(f"checkpoint {folder}: cannot write ({why}); free disk space or choose another "
                          "--out") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _cpu(state: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _write_training(path: Path, training: dict) -> None:
    save_file(_cpu(training["objective"].state_dict()), path / "objective.safetensors")
    opt = training["optimizer"].state_dict()
    flat = {f"state.{i}.{k}": v for i, s in opt["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    save_file(_cpu(flat), path / "optimizer.safetensors")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, path / "rng.safetensors")
    np_state = np.random.get_state()
    state = {**training["state"], "param_groups": opt["param_groups"],
             "python_rng": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
             "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    (path / "state.json").write_text(json.dumps(state) + "\n")


def read_training(folder: Path, objective: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore objective heads, Adam and every RNG from `folder/training_state`; returns state.json."""
    path = folder / "training_state"
    if not (path / "state.json").is_file():
        raise ConfigError(f"checkpoint {folder}: no training_state/ (a finished or exported model cannot resume)")
    load_state(objective, path / "objective.safetensors", folder, "objective's heads")
    state = json.loads((path / "state.json").read_text())
    flat = _tensors(path / "optimizer.safetensors", folder)
    opt_state: dict[int, dict] = {}
    for key, v in flat.items():
        _, i, name = key.split(".", 2)
        opt_state.setdefault(int(i), {})[name] = v
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    except (ValueError, KeyError) as e:
        raise ConfigError(f"checkpoint {folder}: optimizer state does not fit this model ({e})") from None
    rng = _tensors(path / "rng.safetensors", folder)
    torch.set_rng_state(rng["torch"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    py = state["python_rng"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    nps = state["numpy_rng"]
    np.random.set_state((nps[0], np.array(nps[1], dtype=np.uint32), *nps[2:]))
    return state


# ---------------------------------------------------------------- what an image LAM was trained on

OWN_LAM = "exolam-own-lam"  # the spec "kind" of `exolam train` runs (workflows/train_own.py), which record their input


def checkpoint_input(folder: str | Path, required: bool = True) -> tuple[dict, dict | None]:
    """(config.json, input) of a LAM checkpoint: input = {camera, image_size, channels, stored_shape,
    frame_gap}, from the spec of `exolam train`, or derived from a windows data spec (App. D runs).
    A checkpoint that records no camera (trained on a simulator's arrays) or holds no image LAM is
    refused, or with `required=False` gives input None."""
    meta = read_config(folder)
    model = meta.get("model", {}).get("class", "")
    if model not in ("exolam.models.lapo.LapoLAM", "exolam.models.vq.VQLAM"):
        if not required:
            return meta, None
        raise ConfigError(f"checkpoint {folder}: holds a {model or 'unknown model'}, not an image LAM "
                          "(LapoLAM or VQLAM)")
    spec = meta.get("spec") or {}
    if isinstance(spec, dict) and spec.get("kind") == OWN_LAM:
        return meta, dict(spec["input"])
    data, mcfg = meta.get("data") or {}, meta["model"].get("config") or {}
    if not isinstance(data, dict) or data.get("kind") != "lerobot-windows" or "o" not in (data.get("fields") or {}):
        if not required:
            return meta, None
        raise ConfigError(f"checkpoint {folder}: records no camera / frame gap (not trained on LeRobot video)")
    size = data.get("image_size") or mcfg.get("image_size")
    c = mcfg.get("in_channels")
    return meta, {"camera": data["fields"]["o"], "image_size": size, "channels": c, "stored_shape": [size, size, c],
                  "frame_gap": data.get("frame_gap", 1)}


def input_camera(ckpt: Path, inp: dict, ds, camera: str | None) -> str:
    """The camera of `ds` to read with a checkpoint trained on `inp`, checked the one way `label` and
    `diagnose` share: default the checkpoint's own camera (a dataset without it is refused, never
    silently read through another; --camera names another on purpose), and its frames must be of the
    size and channels the checkpoint was trained on (they are resized to its image size, as in training)."""
    if camera is None:
        if inp["camera"] not in ds.features:
            raise ConfigError(f"checkpoint {ckpt}: trained on camera '{inp['camera']}', which {ds.root} lacks (its "
                              f"cameras: {', '.join(ds.video_keys) or 'none'}); pass --camera KEY to read another one")
        camera = inp["camera"]
    from exolam.data.fields import camera_key, stored_shape

    camera = camera_key(ds, camera)
    have, want = list(stored_shape(ds, camera)), list(inp["stored_shape"])
    if have != want:
        raise ConfigError(f"checkpoint {ckpt}: trained on {'x'.join(map(str, want))} (HxWxC) frames of "
                          f"'{inp['camera']}' (resized to {inp['image_size']}px), but '{camera}' of {ds.root} has "
                          f"{'x'.join(map(str, have))} frames")
    return camera
