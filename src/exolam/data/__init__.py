"""Data layer: the one batch type `Transitions`, minibatch streams and batch sources (`sampling`), the
LeRobot v3.0 reader/writer and v2.1 reader (`lerobot`, `lerobot_write`, `video`; need the `data`
extra: pyarrow + av) and frame windows that never cross an episode (`windows`)."""

from exolam.data.transitions import Transitions

__all__ = ["Transitions"]
