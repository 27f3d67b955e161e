"""Which experiment modules exist, and the groups `linear` and `all` (docs/design.md, Commands)."""

from __future__ import annotations

import importlib

# name on the command line -> module under exolam.experiments (in report order)
MODULES = {
    "leakage": "leakage",
    "sensitivity": "sensitivity",
    "auxiliary": "auxiliary",
    "gridworld": "gridworld",
    "swap": "swap",
    "xexo-sweep": "xexo_sweep",
    "control": "control",
}
GROUPS = {"linear": ["leakage", "sensitivity", "auxiliary"]}


def available() -> dict[str, object]:
    """The experiment modules present in this install, by command-line name."""
    found = {}
    for name, mod in MODULES.items():
        try:
            found[name] = importlib.import_module(f"exolam.experiments.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"exolam.experiments.{mod}":
                raise
    return found


def expand(name: str) -> list[str]:
    mods = available()
    if name == "all":
        return list(mods)
    return GROUPS.get(name, [name])
