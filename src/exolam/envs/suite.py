"""dm_control suite access shared by the distracted env (`control.py`) and the state-based expert
(`control_expert.py`): task names checked with a clear line, loads without MuJoCo's deprecation noise."""

from __future__ import annotations

import logging

from exolam.errors import ConfigError


class _SkipTotalmassWarning(logging.Filter):
    """dm_control's cheetah.xml uses `<compiler settotalmass>`, which MuJoCo 3 deprecates; dm_control logs
    MuJoCo's warning through absl at every load, so each collection worker and evaluation env printed it.
    It is not ours to act on (the pinned dm_control ships the XML); every other absl record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "settotalmass" not in record.getMessage()


_SKIP_TOTALMASS = _SkipTotalmassWarning()


def check_task(domain: str, task: str, field: str = "domain/task") -> None:
    from dm_control import suite

    if (domain, task) not in suite.ALL_TASKS:
        raise ConfigError(f"{field} = {domain}-{task} is not a dm_control suite task")


def load_task(domain: str, task: str, seed: int, field: str = "domain/task"):
    """`dm_control.suite.load(domain, task)` with task seed `seed`; an unknown task is refused naming `field`."""
    from dm_control import suite

    check_task(domain, task, field)
    logging.getLogger("absl").addFilter(_SKIP_TOTALMASS)  # a no-op once added (logging.Filterer)
    return suite.load(domain, task, task_kwargs={"random": seed})
