"""Data layer: the one batch type `Transitions` (and, later, dataset readers/writers)."""

from exolam.data.transitions import Transitions

__all__ = ["Transitions"]
