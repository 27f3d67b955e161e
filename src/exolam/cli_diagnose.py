"""`exolam diagnose`: how much exogenous noise leaked into a trained LAM (workflows/diagnose.py).

    exolam diagnose --checkpoint C --data D --out R [--camera KEY] [--max-windows N] [--frame-gap k]
                    [--seed S] [--paired-view augment[:color=C,shift=P,switch=Q]]

C is an exolam checkpoint folder (`exolam.load`) or the --out of `exolam train`, D a LeRobot dataset
(v3.0 or v2.1), R a new folder: R/report.md (verdict, numbers, figures) and R/diagnose.json, written at once. A
checkpoint trained on LeRobot video is checked against D exactly as `exolam label` checks it
(models/checkpoint.py `input_camera`): its camera by default (D without it is refused; --camera reads
another on purpose), frames of the size and channels it was trained on, resized to its image size.
Other checkpoints read the camera's frames as they are, which must have the LAM's channels and size.
Bad input (a missing checkpoint, a camera not in D, frames of another size, R inside D) ends in one
line, exit code 2, nothing written. Consistency and the
xi'-swap test need a paired view: D's `<camera>_alt`, or `--paired-view augment` (data/augment.py: a
colour / camera augmentation drawn per window from --seed; it replaces `<camera>_alt` where D has one).
"""

from __future__ import annotations

from pathlib import Path

from exolam.cliargs import Flag, check
from exolam.errors import ConfigError

USAGE = ("usage: exolam diagnose --checkpoint C --data D --out R [--camera KEY] [--max-windows N] [--frame-gap k] "
         "[--seed S] [--paired-view augment[:color=C,shift=P,switch=Q]]")
FLAGS = {"--checkpoint": Flag("checkpoint", str, config=False), "--data": Flag("data", str, config=False),
         "--out": Flag("out", str, config=False), "--camera": Flag("camera", str, config=False),
         "--max-windows": Flag("max_windows", int, config=False), "--frame-gap": Flag("frame_gap", int, config=False),
         "--seed": Flag("seed", int, config=False), "--paired-view": Flag("paired_view", str, config=False)}


def diagnose_command(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        print(__doc__.split("\n\n", 2)[2].strip())
        return 0
    given = check(list(argv), FLAGS, "diagnose", "exolam diagnose")
    for need in ("checkpoint", "data", "out"):
        if need not in given or not given[need].value:
            raise ConfigError(f"diagnose needs --{need} ({USAGE})")
    value = {k: g.value for k, g in given.items()}

    import torch

    from exolam.data.augment import PairedAugment
    from exolam.data.lerobot import open_dataset
    from exolam.models.checkpoint import (checkpoint_input, in_run, input_camera, load_model)
    from exolam.runs.files import fresh_out
    from exolam.runs.outdir import check_outside
    from exolam.workflows.diagnose import diagnose

    paired_view = None
    if "paired_view" in value:
        paired_view = PairedAugment.parse(value["paired_view"], value.get("seed", 0))
    fresh_out(value["out"])  # refuse an occupied --out before loading anything
    ckpt = in_run(value["checkpoint"])
    check_outside(Path(value["out"]), {"--data": value["data"], "--checkpoint": ckpt})
    _, inp = checkpoint_input(ckpt, required=False)
    lam = load_model(ckpt)
    image_size = None
    if inp is not None:  # a LAM trained on LeRobot video: its camera, size and channels, checked as label does
        value["camera"] = input_camera(ckpt, inp, open_dataset(value["data"]), value.get("camera"))
        image_size = inp["image_size"]
        value.setdefault("frame_gap", inp["frame_gap"])  # default: the LAM's own k
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = diagnose(lam, value["data"], value["out"], value.get("camera"), max_windows=value.get("max_windows", 1024),
                       frame_gap=value.get("frame_gap", 1), image_size=image_size, seed=value.get("seed", 0),
                       name=str(ckpt), paired_view=paired_view)
    finally:
        torch.set_num_threads(threads)
    print(f"wrote {value['out']}/report.md (verdict: {res['verdict']['answer']})")
    return 0
