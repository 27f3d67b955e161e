"""`exolam <command>`: one package, one way to declare a command (docs/design.md, "Commands and files").

Each command is a typed config dataclass with a docstring per field (cli/flags.py: our checks, tyro's
help); a command that reuses a config subclasses or nests it, so a setting has one spelling everywhere.

    reproduce.py   exolam reproduce <experiment> | report          the paper's experiments
    control.py     exolam control train-expert | collect | videos  App. D's expert and demonstrations
    own.py         exolam import | train | label                   your own video, in LeRobot v3.0
    diagnose.py    exolam diagnose [encoder | target]              what leaked, which encoder, which target

Bad input ends in one line on stderr naming the flag or file, exit code 2, nothing written.
"""

from __future__ import annotations

import importlib
import os
import sys

from exolam.errors import ConfigError, Degenerate

# command -> (module.function that runs it, the class that declares it, its one line; tests/test_cli_help.py
# checks that the line is the first line of the class's docstring)
COMMANDS = {
    "reproduce": ("reproduce.reproduce", "reproduce.Options",
                  "Run an experiment of the paper (or a group: linear, all) and print its claims."),
    "report": ("reproduce.report", "reproduce.Report",
               "Merge sharded runs and write the report of every finished experiment (report.md)."),
    "control train-expert": ("control.control", "control.ExpertCommand",
                             "Train (or resume) the SB3 expert of cheetah-run on its state (App. D)."),
    "control collect": ("control.control", "control.CollectCommand",
                        "Roll the expert out in Distracting Control into a paired LeRobot dataset (App. D)."),
    "control videos": ("control.control", "control.VideosCommand",
                       "Write action-free mp4s of the distracted task: a stand-in for your own recordings."),
    "import": ("own.import_command", "own.ImportCommand",
               "Bring mp4, npz, hdf5 or LeRobot v2.1 data into a LeRobot v3.0 dataset."),
    "train": ("own.train_command", "exolam.workflows.train_own.TrainOwnConfig",
              "Train (or resume) a latent action model on a LeRobot dataset's video."),
    "label": ("own.label_command", "own.LabelCommand",
              "Write a copy of a LeRobot dataset with the LAM's latent action on every frame."),
    "diagnose": ("diagnose.diagnose", "diagnose.DiagnoseCommand",
                 "Measure how much exogenous noise leaked into a trained LAM (report.md with a verdict)."),
    "diagnose encoder": ("diagnose.diagnose", "diagnose.EncoderCommand",
                         "Rank frozen encoders by the exogenous energy they let through (delta_h, Sec. 4.3)."),
    "diagnose target": ("diagnose.diagnose", "diagnose.TargetCommand",
                        "Rank targets by how close they pull z to consistency across xi (eta, Prop. 4.8)."),
}
OUT_OF_MEMORY = ("can't allocate memory", "out of memory")  # torch's CPU allocator; CUDA's


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  exolam {name:{width}s}  {line}" for name, (_, _, line) in COMMANDS.items()]
    return "\n".join(["usage: exolam <command> [flags]  (exolam <command> --help: every flag, its default)", "",
                      "commands:", *lines])


def resolve(dotted: str):
    """`module.attr` (relative to exolam.cli, or absolute from `exolam.`) -> the object."""
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module if module.startswith("exolam.") else f"exolam.cli.{module}"), attr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(usage())
            return 0 if argv else 2
        first = {name.split()[0]: run for name, (run, _, _) in COMMANDS.items()}
        if argv[0] not in first:
            raise ConfigError(f"command: unknown '{argv[0]}' (allowed: {', '.join(first)})")
        return resolve(first[argv[0]])(argv[1:])
    except ConfigError as e:
        print(f"exolam: error: {e}", file=sys.stderr)
        return 2
    except Degenerate as e:  # --stop-if-degenerate: the input was fine, the model learned nothing
        print(f"exolam: stopped: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("exolam: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:  # an allocation the up-front checks did not foresee
        if not isinstance(e, MemoryError) and not any(s in str(e) for s in OUT_OF_MEMORY):
            raise
        what = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        print(f"exolam: error: out of memory ({what}); lower the image size, batch size or widths", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `exolam ... --help | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
