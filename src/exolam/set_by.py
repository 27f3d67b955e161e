"""Config fields an experiment sets itself (docs/design.md: "a flag either takes effect or is refused").

An experiment that sweeps `env.p_switch` (or sets `env.sigma` per job) would silently overwrite a
value given for it. Each such experiment lists those fields with a hint in its `Config.SET_BY`
(`{"env.p_switch": "leakage sweeps p_switch: use --p-switches"}`); the CLI refuses the flags, and
`check_set_by` refuses a config built in Python with a non-default value there.
"""

from __future__ import annotations

from exolam.errors import ConfigError


def _get(obj, path: str):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def check_set_by(cfg) -> None:
    """Raise ConfigError with the hint when a field in type(cfg).SET_BY differs from its default."""
    set_by = getattr(type(cfg), "SET_BY", {})
    if not set_by:
        return
    default = type(cfg)()
    for path, hint in set_by.items():
        if _get(cfg, path) != _get(default, path):
            raise ConfigError(f"{path} = {_get(cfg, path)!r} is not used: {hint}")
