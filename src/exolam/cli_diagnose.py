"""`exolam diagnose`: how much exogenous noise leaked into a trained LAM (tools/diagnose.py).

    exolam diagnose --checkpoint C --data D --out R [--camera KEY] [--max-windows N] [--frame-gap k]
                    [--seed S] [--paired-view augment[:color=C,shift=P,switch=Q]]

C is an exolam checkpoint folder (`exolam.load`) or the --out of `exolam train`, D a LeRobot dataset
(v3.0 or v2.1), R a new folder: R/report.md (verdict, numbers, figures) and R/diagnose.json, written at once. Frames are
resized only when the checkpoint records the image_size it was trained at (its data spec); otherwise
the camera's frames must have the LAM's channels and size. Bad input (a missing checkpoint, a camera
not in D, frames of another size) ends in one line, exit code 2, nothing written. Consistency and the
xi'-swap test need a paired view: D's `<camera>_alt`, or `--paired-view augment` (data/augment.py: a
colour / camera augmentation drawn per window from --seed; it replaces `<camera>_alt` where D has one).
"""

from __future__ import annotations

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
    from exolam.fileio import fresh_out
    from exolam.tools.diagnose import diagnose
    from exolam.train.checkpoint import in_run, load_model, read_config

    paired_view = None
    if "paired_view" in value:
        paired_view = PairedAugment.parse(value["paired_view"], value.get("seed", 0))
    fresh_out(value["out"])  # refuse an occupied --out before loading anything
    ckpt = in_run(value["checkpoint"])
    lam = load_model(ckpt)
    data_spec = read_config(ckpt).get("data") or {}
    data_spec = data_spec if isinstance(data_spec, dict) else {}
    image_size = data_spec.get("image_size")
    if not (isinstance(image_size, int) and image_size > 0):
        image_size = None
    trained_on = (data_spec.get("fields") or {}).get("o") if isinstance(data_spec.get("fields"), dict) else None
    if "camera" not in value and trained_on in open_dataset(value["data"]).features:
        value["camera"] = trained_on  # default: the camera the LAM was trained on
    if "frame_gap" not in value and isinstance(data_spec.get("frame_gap"), int):
        value["frame_gap"] = data_spec["frame_gap"]  # default: the LAM's own k
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
