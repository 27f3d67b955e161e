"""Small matplotlib helpers shared by the experiment figures and the diagnosis reports (Agg backend, PNG
output); below both, so a user command never imports an experiment module for them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.2):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, list(axes.ravel())


def errorbar_panel(ax, x, stats: list[dict], label: str, color=None, err: str = "se", **kw):
    """Plot mean +- `err` ('se' or 'std') from summary entries {'mean','se','std'}."""
    mean = [s["mean"] for s in stats]
    e = [s[err] for s in stats]
    ax.errorbar(x, mean, yerr=e, marker="o", ms=3, capsize=2, label=label, color=color, **kw)
    ax.grid(alpha=0.3)


def close(fig) -> None:
    plt.close(fig)
