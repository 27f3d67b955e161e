"""The LAPO-style latent action model of App. D (Distracting Control), continuous z, no quantizer.

    x  = f(I),  x' = f'(I')                    the LAM's observation pair (f, f' below)
    z  = Linear(flatten(CNN_s2([x, x'])))       psi_IDM: strided 3x3 convs + GELU, z in R^{d_z}, d_z = 8
    x'_hat = UNet(x | z)                        psi_FDM: conv encoder-decoder + GELU, Tanh output
    L_LAM  = E || target(I') - x'_hat ||^2      Eq. (5) in the space of x'

App. D follows LAPO (convolutions with GELU and Tanh) but drops its FSQ bottleneck for a small
continuous latent (d_z = 8), so `idm` returns codes=None, loss=0 and z_pre = z.

Three observation spaces (`encoder`):

- "pixels": f = f' = the identity on pixels. Observations come from the dataset layer as float
  [0, 1]; inside the model they are mapped to [-1, 1] (2 I - 1), the FDM ends in Tanh, and its output
  is mapped back, (tanh(h) + 1) / 2, so `fdm`/`decode` return a frame in [0, 1] like `o` and the
  target of Eq. (5) is `o_next` itself (`fdm_target(o_next)` = o_next).
- "ema": App. D's jointly trained vision encoder (after Cui et al.; LAOM and DynaMo do the same).
  f is a small conv encoder (strided 3x3 convs + GELU, a last conv + Tanh, so features lie in
  [-1, 1]^{feat_channels x S_f x S_f} with S_f = image_size halved len(enc_channels) times); f' = f_EMA
  is an exponential-moving-average copy of f that never receives gradients. Read literally
  ("for the next observation o' = f(I'), f is treated as stop-gradient and updated via EMA"):
  the IDM sees [f(I), sg f_EMA(I')], the FDM maps f(I) and z to a feature map in [-1, 1] (Tanh, the
  features' own range), and Eq. (5) reads
        L_LAM = E || sg f_EMA(I') - psi_FDM(f(I), psi_IDM(f(I), sg f_EMA(I'))) ||^2,
  so the online f learns through both the IDM and the FDM, and f_EMA follows it through
        theta_EMA <- decay * theta_EMA + (1 - decay) * theta_f      after every optimizer step
  (`ema_hook(step, model)` for `engine.fit(hooks=[...])`). Here `fdm`/`decode` return predicted
  *features* [B, feat_channels, S_f, S_f], not a frame, and the objective must compare them with
  `fdm_target(o_next)` = sg f_EMA(o_next) instead of `o_next` (pixel metrics such as the xi'-swap
  PSNR do not apply to this mode). Nothing here prevents collapse (a constant f gives L = 0); the
  EMA lag and the FDM acting as a BYOL-style predictor are all App. D describes. Squared errors are
  summed over feature dims (feat_channels * S_f^2, 4096 at 64 px with the defaults, vs 12288 pixels),
  which changes what the lambdas of the other terms mean.

- "frozen": a pretrained encoder f = f' from models/encoders.py, named by `encoder_spec` (any
  `load_encoder` spec giving a spatial map [C', H', W']: efficientnet-lite0, hf:PATH (DINOv2 patch
  features, as UniVLA trains its LAM), timm:ARCH:PATH, ema:CKPT, pixels; a pooled / CLS vector is
  refused, the IDM and FDM are convolutional). f runs in eval mode under no_grad and is never
  trained. x = P f(I) and x' = P f(I') with P a trained 1x1 conv C' -> proj_channels (64 by default;
  LapoLAM's 3x3 convs on 1280-channel EfficientNet maps would be heavy), so
        z = psi_IDM(P f(I), P f(I')),   f'_hat = psi_FDM(P f(I), z) -> C' channels (last 1x1 conv),
        L_LAM = E || f(I') - f'_hat ||^2      (`fdm_target(o_next)` = f(o_next), unprojected).
  The target is the frozen features themselves, never P f(I'): a trained projection of the target
  could collapse (P = 0 gives L = 0); P only shapes what the IDM and FDM read. The FDM output is
  linear (identity, no Tanh): CNN/ViT features are unbounded (DINOv2 tokens) or not in [-1, 1]
  (EfficientNet-Lite's ReLU6 head, [0, 6]), and a linear output fits any range, also that of an
  ema:CKPT encoder's Tanh features. Squared errors are summed over C' H' W' (62720 for
  EfficientNet-Lite0 [1280, 7, 7]; 98304 for DINOv2-S [384, 16, 16] at 224 px), which again changes
  what the lambdas of the other terms mean. f is held outside the module tree (`frozen_encoder`,
  a plain attribute): it is not in state_dict (a DINOv2-B would add 350 MB to every checkpoint),
  `.to()` does not move it (it follows the input's device on first use), and `exolam.load` rebuilds
  it from `encoder_spec` (made absolute at construction; a weights path that is gone gives the
  encoder's own ConfigError line). `encoder_fingerprint` records the weights' hash: rebuilding on
  other weights at the same path is refused. The features of the last few input tensors are
  memoized (by identity), so idm + fdm + fdm_target of one batch run f once per frame tensor.

EMA decay: 0.99 (a time constant of ~100 updates). The paper gives no value; DynaMo starts at 0.99
(cosine-scheduled to 1), LAOM uses tau = 1e-3 (decay 0.999). 0.99 lets the target follow within the
few thousand updates of the CPU presets while still lagging the online encoder; decay = 1 freezes
f_EMA at its initialization (a frozen random encoder), decay = 0 copies f every step.

FDM conditioning: z enters twice, as in vq.py: broadcast as d_z extra input channels next to x, and
as FiLM (x * (1 + gamma(z)) + beta(z)) at the UNet bottleneck. The UNet has len(fdm_channels) levels
(stride-2 convs down, nearest upsampling + skip concatenation up), so any frame size works
(strided convs round up, upsampling returns to the skip's exact size).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from exolam.errors import ConfigError, check_positive_int, check_range
from exolam.models.base import LAM, IDMOutput

if TYPE_CHECKING:
    from exolam.models.encoders import Encoder as FrozenEncoder

ENCODERS = ("pixels", "ema")  # the observation spaces trained with the LAM (variants of control_jobs)
OBS_SPACES = ENCODERS + ("frozen",)  # + a pretrained encoder named by encoder_spec
MEMO = 4  # frozen features of this many input tensors are kept (o, o', and xexo's o~, o~')


def halve(size: int, times: int) -> int:
    """Spatial size after `times` 3x3 stride-2 pad-1 convs (each gives ceil(size / 2))."""
    for _ in range(times):
        size = (size + 1) // 2
    return size


class DownConv(nn.Conv2d):
    """3x3 stride-2 pad-1 conv, ceil(S / 2) out (`halve`). A side of 1 pixel runs with stride 1: the same
    output (only the centre tap meets the pixel; the parameters are those of the stride-2 conv), but not
    torch 2.13's CPU bf16 weight-gradient kernel for stride 2 on a 1-pixel side, which returns NaN at
    random (measured: 3 of 8 processes; a frozen encoder's 7 x 7 map reaches 1 x 1 in the IDM)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = tuple(1 if n == 1 else 2 for n in x.shape[-2:])
        return F.conv2d(x, self.weight, self.bias, stride, self.padding)


@dataclasses.dataclass
class LapoLAMConfig:
    """Architecture of the LAPO-style LAM of App. D; defaults fit 64x64x3 frames."""

    in_channels: int = 3  # image channels (3: RGB)
    image_size: int = 64  # observation height = width (pixels)
    idm_channels: tuple[int, ...] = (32, 64, 128, 128)  # psi_IDM stride-2 conv widths
    fdm_channels: tuple[int, ...] = (32, 64, 128)  # psi_FDM UNet widths, one per level (>= 2)
    d_z: int = 8  # continuous latent action dim (App. D)
    encoder: Literal["pixels", "ema", "frozen"] = "pixels"  # observation space (module docstring)
    enc_channels: tuple[int, ...] = (32, 32)  # f: stride-2 conv widths (ema only)
    feat_channels: int = 16  # f: output channels (ema only)
    ema_decay: float = 0.99  # f_EMA decay per optimizer step (ema only; see module docstring)
    encoder_spec: str = ""  # frozen only: the models/encoders.py `load_encoder` spec (made absolute)
    proj_channels: int = 64  # frozen only: 1x1 conv projection C' -> proj_channels the IDM/FDM read
    encoder_fingerprint: str = ""  # frozen only: hash of the encoder's weights (set at construction)

    def validate(self) -> "LapoLAMConfig":
        for name in ("in_channels", "image_size", "d_z", "feat_channels", "proj_channels"):
            check_positive_int(f"model.{name}", getattr(self, name))
        for name, least in (("idm_channels", 1), ("fdm_channels", 2), ("enc_channels", 1)):
            widths = getattr(self, name)
            if not isinstance(widths, (tuple, list)) or len(widths) < least:
                raise ConfigError(f"model.{name} = {widths!r} must list at least {least} conv width(s)")
            for i, c in enumerate(widths):
                check_positive_int(f"model.{name}[{i}]", c)
        if self.encoder not in OBS_SPACES:
            raise ConfigError(f"model.encoder = {self.encoder!r} must be one of {', '.join(OBS_SPACES)}")
        if not isinstance(self.encoder_spec, str) or (self.encoder == "frozen") != bool(self.encoder_spec.strip()):
            raise ConfigError(f"model.encoder_spec = {self.encoder_spec!r}: a load_encoder spec (efficientnet-lite0, "
                              "hf:PATH, timm:ARCH:PATH, ema:CKPT) is required with encoder 'frozen' and only there")
        check_range("model.ema_decay", self.ema_decay, 0.0, 1.0)
        return self

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """Shape of what the FDM predicts: the frame (pixels) or f's feature map (ema); frozen: see LapoLAM."""
        if self.encoder == "pixels":
            return (self.in_channels, self.image_size, self.image_size)
        if self.encoder == "frozen":
            raise ConfigError("model.obs_shape: a frozen encoder's feature shape is known once it is loaded; "
                              "read LapoLAM.obs_shape")
        s = halve(self.image_size, len(self.enc_channels))
        return (self.feat_channels, s, s)


def frozen_feature_shape(enc: "FrozenEncoder", image_size: int, channels: int) -> tuple[int, int, int]:
    """f's per-frame output [C', H', W'] for image_size x image_size x channels inputs; a vector or a failure -> ConfigError."""
    try:
        shape = tuple(int(d) for d in enc.out_shape_for(image_size, channels))
    except RuntimeError as e:
        raise ConfigError(f"encoder {enc.name}: fails on {channels}-channel {image_size}x{image_size} frames "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    if len(shape) != 3:
        raise ConfigError(f"encoder {enc.name}: gives a feature vector {list(shape)} per frame; the LAPO LAM's conv "
                          "IDM/FDM need a spatial map [C', H', W'] (drop ':pooled' / ':cls')")
    return shape


class ConvEncoder(nn.Module):
    """f (ema mode): [stride-2 conv3x3 + GELU] per width, then conv3x3 + Tanh -> features in [-1, 1].
    Trained jointly with the LAM; the pretrained encoders of models/encoders.py share its role, not its class."""

    def __init__(self, cfg: LapoLAMConfig):
        super().__init__()
        layers, c_in = [], cfg.in_channels
        for c in cfg.enc_channels:
            layers += [DownConv(c_in, c), nn.GELU()]
            c_in = c
        layers += [nn.Conv2d(c_in, cfg.feat_channels, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(2 * img - 1)


class IDM(nn.Module):
    """psi_IDM: [stride-2 conv3x3 + GELU] per width on [x, x'] (channel-stacked), flatten, Linear -> z."""

    def __init__(self, cfg: LapoLAMConfig, shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = shape  # of x (and x')
        layers, c_in = [], 2 * c
        for width in cfg.idm_channels:
            layers += [DownConv(c_in, width), nn.GELU()]
            c_in = width
        self.conv = nn.Sequential(*layers)
        n = len(cfg.idm_channels)
        self.head = nn.Linear(c_in * halve(h, n) * halve(w, n), cfg.d_z)

    def forward(self, x: torch.Tensor, x_next: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(torch.cat([x, x_next], dim=1)).flatten(1))


class UNetFDM(nn.Module):
    """psi_FDM: a UNet on x conditioned on z; returns pre-Tanh values (the model applies the range).

        e_0 = GELU(conv(x ++ z))                    w_0 @ S        (z broadcast as d_z channels)
        e_i = GELU(conv_stride2(e_{i-1}))           w_i @ S / 2^i  (i = 1 .. L-1)
        b   = GELU(conv(FiLM_z(e_{L-1})))           w_{L-1}        (FiLM: e * (1 + gamma(z)) + beta(z))
        d_i = GELU(conv(up(d_{i+1}) ++ e_i))        w_i            (i = L-2 .. 0, d_{L-1} = b)
        out = conv1x1(d_0)                          c_out          (frozen: C' of f, x has proj_channels)
    """

    def __init__(self, cfg: LapoLAMConfig, c_in: int, c_out: int):
        super().__init__()
        w = cfg.fdm_channels
        self.stem = nn.Conv2d(c_in + cfg.d_z, w[0], 3, padding=1)
        self.downs = nn.ModuleList(DownConv(w[i - 1], w[i]) for i in range(1, len(w)))
        self.film = nn.Linear(cfg.d_z, 2 * w[-1])
        self.mid = nn.Conv2d(w[-1], w[-1], 3, padding=1)
        self.ups = nn.ModuleList(nn.Conv2d(w[i + 1] + w[i], w[i], 3, padding=1) for i in reversed(range(len(w) - 1)))
        self.out = nn.Conv2d(w[0], c_out, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z_map = z[:, :, None, None].expand(-1, -1, x.shape[-2], x.shape[-1]).to(x.dtype)
        skips = [F.gelu(self.stem(torch.cat([x, z_map], dim=1)))]
        for down in self.downs:
            skips.append(F.gelu(down(skips[-1])))
        gamma, beta = self.film(z).chunk(2, dim=-1)
        h = skips.pop() * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        h = F.gelu(self.mid(h))
        for up in self.ups:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = F.gelu(up(torch.cat([h, skip], dim=1)))
        return self.out(h)


class LapoLAM(LAM):
    """The LAPO-style LAM of App. D with the LAM protocol of models/base.py (see the module docstring).

    encoder "pixels": fdm/decode -> frame in [0, 1], shape of o;  fdm_target(o_next) = o_next.
    encoder "ema":    fdm/decode -> features in [-1, 1], cfg.obs_shape;  fdm_target(o_next) = sg f_EMA(o_next).
    encoder "frozen": fdm/decode -> features (linear), self.obs_shape = f's [C', H', W'];
                      fdm_target(o_next) = f(o_next) of the frozen pretrained encoder.

    `encoder` (frozen only, optional): an already loaded `encoders.Encoder` for cfg.encoder_spec (saves a
    second load of the weights); by default it is loaded from the spec.
    """

    def __init__(self, cfg: LapoLAMConfig | None = None, encoder: "FrozenEncoder | None" = None):
        super().__init__()
        cfg = (cfg or LapoLAMConfig()).validate()
        self._frozen: tuple = ()  # (f,) in frozen mode: a plain attribute, outside state_dict and .to()
        self._memo: list = []  # [(input tensor, its version, f(input))], newest last
        if cfg.encoder == "frozen":
            from exolam.models.encoders import load_encoder

            enc = load_encoder(cfg.encoder_spec if encoder is None else encoder)
            if cfg.encoder_fingerprint and enc.fingerprint and enc.fingerprint != cfg.encoder_fingerprint:
                raise ConfigError(f"encoder {enc.name}: its weights changed since this LAM was trained (fingerprint "
                                  f"{enc.fingerprint}, trained on {cfg.encoder_fingerprint})")
            cfg = dataclasses.replace(cfg, encoder_spec=enc.name, encoder_fingerprint=enc.fingerprint)
            self._frozen = (enc.freeze(),)
            self.feat_shape = frozen_feature_shape(enc, cfg.image_size, cfg.in_channels)
            self.proj = nn.Conv2d(self.feat_shape[0], cfg.proj_channels, 1)
            x_shape = (cfg.proj_channels, *self.feat_shape[1:])
        else:
            x_shape = cfg.obs_shape
        self.cfg = cfg
        if cfg.encoder == "ema":
            self.f = ConvEncoder(cfg)
            self.f_ema = copy.deepcopy(self.f).requires_grad_(False)
        self.idm_net = IDM(cfg, x_shape)
        self.fdm_net = UNetFDM(cfg, x_shape[0], self.obs_shape[0])

    @property
    def d_z(self) -> int:
        return self.cfg.d_z

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """Shape of what fdm/decode return (and fdm_target): the frame, f_EMA's or the frozen f's features."""
        return self.feat_shape if self.cfg.encoder == "frozen" else self.cfg.obs_shape

    @property
    def frozen_encoder(self) -> "FrozenEncoder | None":
        """The pretrained f of frozen mode (not a submodule: not saved, not moved by .to()); else None."""
        return self._frozen[0] if self._frozen else None

    def extra_repr(self) -> str:
        return f"encoder={self.cfg.encoder!r}" + (f", f={self.cfg.encoder_spec!r}" if self._frozen else "")

    # ------------------------------------------------------------ observation space

    def features(self, o: torch.Tensor, memo: bool = True) -> torch.Tensor:
        """f(I) of the frozen encoder [B, C', H', W'] (no gradient; memoized per input tensor; always fp32, as
        data/features.py caches it, whatever the training precision). Frozen only."""
        if not self._frozen:
            raise ConfigError(f"LapoLAM.features: only for encoder 'frozen' (this one is {self.cfg.encoder!r})")
        version = None if o.is_inference() else o._version  # inference tensors keep no version: never memoized
        for ref, v, feat in self._memo:
            if ref is o and version is not None and v == version:
                return feat
        enc = self._frozen[0]
        ref = next(iter(enc.parameters()), None)
        ref = next(iter(enc.buffers()), None) if ref is None else ref
        if ref is not None and ref.device != o.device:
            enc.to(o.device)  # follows the input (the LAM's .to() does not reach it)
        with torch.no_grad(), torch.autocast(o.device.type, enabled=False):  # f in fp32 under bf16-mixed too:
            feat = enc(o.float()).to(self.proj.weight.dtype)  # the features its cache holds (bf16 moved L_LAM ~24 %)
        if memo and version is not None:
            self._memo = self._memo[-(MEMO - 1):] + [(o, version, feat)]
        return feat

    def embed(self, o: torch.Tensor) -> torch.Tensor:
        """x = f(I): the online representation the IDM and FDM read (2 I - 1 for pixels, P f(I) for frozen)."""
        if self.cfg.encoder == "frozen":
            return self.proj(self.features(o))
        return self.f(o) if self.cfg.encoder == "ema" else 2 * o - 1

    def embed_target(self, o_next: torch.Tensor) -> torch.Tensor:
        """x' the IDM reads: sg f_EMA(I') (ema), 2 I' - 1 (pixels), P sg f(I') (frozen; P is trained)."""
        if self.cfg.encoder == "frozen":
            return self.embed(o_next)
        with torch.no_grad():
            return self.f_ema(o_next) if self.cfg.encoder == "ema" else 2 * o_next - 1

    def fdm_target(self, o_next: torch.Tensor) -> torch.Tensor:
        """What `fdm(o, z)` is compared with in L_LAM (Eq. 5): o_next, sg f_EMA(o_next) or f(o_next) (frozen)."""
        if self.cfg.encoder == "frozen":
            return self.features(o_next)
        return self.embed_target(o_next) if self.cfg.encoder == "ema" else o_next

    # ------------------------------------------------------------ the LAM protocol

    def idm(self, o: torch.Tensor, o_next: torch.Tensor) -> IDMOutput:
        """psi_IDM(f(o), sg f'(o')) -> continuous z [B, d_z]; no bottleneck (codes None, loss 0)."""
        return self._out(self.idm_net(self.embed(o), self.embed_target(o_next)))

    def idm_on_features(self, feat: torch.Tensor, feat_next: torch.Tensor) -> IDMOutput:
        """`idm` from precomputed frozen features f(o), f(o') (label runs f once per frame). Frozen only."""
        if not self._frozen:
            raise ConfigError(f"LapoLAM.idm_on_features: only for encoder 'frozen' (this one is {self.cfg.encoder!r})")
        return self._out(self.idm_net(self.proj(feat), self.proj(feat_next)))

    @staticmethod
    def _out(z: torch.Tensor) -> IDMOutput:
        return IDMOutput(z=z, z_pre=z, codes=None, loss=z.new_zeros((), dtype=torch.float32))

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """psi_FDM(f(o), z): the next frame in [0, 1] (pixels), f_EMA features in [-1, 1] (ema), f(o') (frozen)."""
        h = self.fdm_net(self.embed(o), z)
        if self.cfg.encoder == "frozen":
            return h  # linear: frozen features are not in [-1, 1] (module docstring)
        y = torch.tanh(h)
        return (y + 1) / 2 if self.cfg.encoder == "pixels" else y

    # ------------------------------------------------------------ EMA target encoder

    @torch.no_grad()
    def ema_update(self) -> None:
        """theta_EMA <- decay * theta_EMA + (1 - decay) * theta_f (parameters and buffers); no-op otherwise."""
        if self.cfg.encoder != "ema":
            return
        d = self.cfg.ema_decay
        for t, s in zip(self.f_ema.parameters(), self.f.parameters()):
            t.lerp_(s.detach(), 1.0 - d)
        for t, s in zip(self.f_ema.buffers(), self.f.buffers()):
            t.copy_(s)


def ema_hook(step: int, model: nn.Module) -> None:
    """`engine.fit(..., hooks=[ema_hook])`: one EMA update of f_EMA after every optimizer step."""
    inner = getattr(model, "module", model)  # a DDP / Fabric wrapper, if one is passed
    inner.ema_update()
