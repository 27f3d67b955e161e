"""`exolam diagnose`: what leaked into a trained LAM, and which encoder or target to choose before training.

    exolam diagnose --checkpoint C --data D --out R [--camera KEY] [--max-windows N] [--frame-gap k]
                    [--seed S] [--paired-view augment[:color=C,shift=P,switch=Q]]
    exolam diagnose encoder --encoder SPEC [--encoder SPEC ...] --data D --out R [...]
    exolam diagnose target --target T [T ...] --data D --out R [...]

diagnose (workflows/diagnose.py): C is an exolam checkpoint folder (`exolam.load`) or the --out of
`exolam train`, D a LeRobot dataset (v3.0 or v2.1), R a new folder: R/report.md (verdict, numbers,
figures) and R/diagnose.json, written at once. A checkpoint trained on LeRobot video is checked
against D exactly as `exolam label` checks it (models/checkpoint.py `input_camera`): its camera by
default (D without it is refused; --camera reads another on purpose), frames of the size and channels
it was trained on, resized to its image size. Other checkpoints read the camera's frames as they are,
which must have the model's channels and size. Consistency and the xi'-swap test need a paired view:
D's `<camera>_alt`, or `--paired-view augment` (data/augment.py: a colour / camera augmentation drawn
per window from --seed; it replaces `<camera>_alt` where D has one).
encoder: workflows/diagnose_encoder.py (delta_h, Eq. 12-14); target: workflows/diagnose_target.py (eta,
Prop. 4.8). Bad input ends in one line, exit code 2, nothing written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import tyro

from exolam.cli.flags import parse
from exolam.workflows.diagnose_target import TARGETS

@dataclasses.dataclass
class DiagnoseCommand:
    """Measure how much exogenous noise leaked into a trained LAM (report.md with a verdict)."""

    checkpoint: str
    """an `exolam train` run folder, its checkpoint/, or any `exolam.load` checkpoint"""
    data: str
    """the LeRobot dataset to measure on (v3.0 or v2.1; read only)"""
    out: str
    """folder of the report (report.md, diagnose.json, figures)"""
    camera: str | None = None
    """video feature to read; None: the checkpoint's camera"""
    max_windows: int = 1024
    """windows (o_t, o_{t+k}) measured, evenly spread over the episodes"""
    frame_gap: int | None = None
    """k; None: the checkpoint's own"""
    seed: int = 0
    """draws the held-out split and the augmented paired view"""
    paired_view: str | None = None
    """a paired view drawn by augmentation, augment[:color=C,shift=P,switch=Q]; None: D's <camera>_alt"""


@dataclasses.dataclass
class EncoderCommand:
    """Rank frozen encoders by the exogenous energy they let through (delta_h, Sec. 4.3)."""

    encoder: tyro.conf.UseAppendAction[tuple[str, ...]]
    """specs to compare, one per --encoder: pixels, ema:CKPT, efficientnet-lite0[:pooled], hf:PATH[:cls],
    timm:ARCH:PATH (models/encoders.py)"""
    data: str
    """a paired LeRobot dataset (<camera> and <camera>_alt), or any with --paired-view"""
    out: str
    """folder of encoder.md and encoder.json"""
    camera: str | None = None
    """video feature to read; None: the dataset's first"""
    image_size: int | None = None
    """frames are resized to image_size x image_size first; None: as stored"""
    max_frames: int = 2048
    """frames measured, evenly spread over the episodes"""
    device: Literal["cpu", "cuda"] = "cpu"
    """where the encoders run"""
    paired_view: str | None = None
    """a paired view drawn by augmentation, augment[:color=C,shift=P]; None: D's <camera>_alt"""


@dataclasses.dataclass
class TargetCommand:
    """Rank targets by how close they pull z to consistency across xi (eta, Prop. 4.8)."""

    target: tuple[Literal[TARGETS], ...]
    """targets y to compare"""
    data: str
    """a paired LeRobot dataset (<camera> and <camera>_alt, and `action` for the action target)"""
    out: str
    """folder of target.md and target.json"""
    camera: str | None = None
    """video feature to read; None: the dataset's first"""
    image_size: int | None = None
    """frames are resized to image_size x image_size; None: as stored"""
    frame_gap: int = 1
    """k: windows (o_t, o_{t+k})"""
    max_windows: int = 1024
    """windows measured, evenly spread over the episodes"""
    seed: int = 0
    """draws the windows and the augmented paired view"""
    paired_view: str | None = None
    """a paired view drawn by augmentation, augment[:color=C,shift=P,switch=Q]; None: D's <camera>_alt"""


def diagnose(argv: list[str]) -> int:
    """`exolam diagnose encoder ...`, `exolam diagnose target ...` or `exolam diagnose --checkpoint ...`."""
    if argv and argv[0] == "encoder":
        return encoder_command(argv[1:])
    if argv and argv[0] == "target":
        return target_command(argv[1:])
    return model_command(argv)


def model_command(argv: list[str]) -> int:
    cmd = parse(DiagnoseCommand, argv, "exolam diagnose")
    if cmd is None:
        print("\nalso: exolam diagnose encoder --help, exolam diagnose target --help")
        return 0
    import torch

    from exolam.data.augment import PairedAugment
    from exolam.data.lerobot import open_dataset
    from exolam.models.checkpoint import checkpoint_input, in_run, input_camera, load_model
    from exolam.runs.files import fresh_out
    from exolam.runs.outdir import check_outside
    from exolam.workflows.diagnose import diagnose as run

    paired_view = None if cmd.paired_view is None else PairedAugment.parse(cmd.paired_view, cmd.seed)
    fresh_out(cmd.out)  # refuse an occupied --out before loading anything
    ckpt = in_run(cmd.checkpoint)
    check_outside(Path(cmd.out), {"--data": cmd.data, "--checkpoint": ckpt})
    _, inp = checkpoint_input(ckpt, required=False)
    model = load_model(ckpt)
    camera, image_size, frame_gap = cmd.camera, None, cmd.frame_gap
    if inp is not None:  # a LAM trained on LeRobot video: its camera, size and channels, checked as label does
        camera = input_camera(ckpt, inp, open_dataset(cmd.data), cmd.camera)
        image_size = inp["image_size"]
        frame_gap = inp["frame_gap"] if frame_gap is None else frame_gap  # default: the LAM's own k
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run(model, cmd.data, cmd.out, camera, max_windows=cmd.max_windows, frame_gap=frame_gap or 1,
                  image_size=image_size, seed=cmd.seed, name=str(ckpt), paired_view=paired_view)
    finally:
        torch.set_num_threads(threads)
    print(f"wrote {cmd.out}/report.md (verdict: {res['verdict']['answer']})")
    return 0


def encoder_command(argv: list[str]) -> int:
    from exolam.data.augment import PairedAugment
    from exolam.workflows.diagnose_encoder import PLAIN, diagnose_encoder
    from exolam.workflows.diagnose_report import short_num

    cmd = parse(EncoderCommand, argv, "exolam diagnose encoder")
    if cmd is None:
        return 0
    paired_view = None if cmd.paired_view is None else PairedAugment.parse(cmd.paired_view)
    result = diagnose_encoder(list(cmd.encoder), cmd.data, cmd.camera, cmd.out, cmd.image_size, cmd.max_frames,
                              cmd.device, paired_view=paired_view)
    for i, name in enumerate(result["ranking"], 1):
        dh = next(r for r in result["encoders"] if r["encoder"] == name)["delta_h"]
        print(f"{i}. {name}: relative delta_h {short_num(dh['relative'])}, delta_h mean {short_num(dh['mean'])}")
    print(f"wrote {Path(cmd.out) / 'encoder.md'} ({PLAIN})")
    return 0


def target_command(argv: list[str]) -> int:
    from exolam.data.augment import PairedAugment
    from exolam.workflows.diagnose_report import short_num
    from exolam.workflows.diagnose_target import PLAIN, diagnose_target

    cmd = parse(TargetCommand, argv, "exolam diagnose target")
    if cmd is None:
        return 0
    paired_view = None if cmd.paired_view is None else PairedAugment.parse(cmd.paired_view, cmd.seed)
    result = diagnose_target(cmd.target, cmd.data, cmd.out, cmd.camera, image_size=cmd.image_size,
                             frame_gap=cmd.frame_gap, max_windows=cmd.max_windows, seed=cmd.seed,
                             paired_view=paired_view)
    for i, name in enumerate(result["ranking"], 1):
        r = next(r for r in result["targets"] if r["target"] == name)
        print(f"{i}. {name}: relative eta {short_num(r['eta']['relative'])}, NMSE(y from a) {short_num(r['nmse_from_a'])}")
    print(f"wrote {Path(cmd.out) / 'target.md'} ({PLAIN})")
    return 0
