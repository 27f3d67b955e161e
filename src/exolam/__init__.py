"""exolam: latent action models (LAMs) under exogenous noise.

Implements "Why Latent Actions Fail, and How to Prevent It": the Ex-BMDP generators, linear and
practical LAMs, the standard objective L_LAM and its remedies (L_X-exo, L_xi-robust), the paper's
metrics and every experiment. See docs/design.md for the layers; imports only point down.
"""

from exolam.data.transitions import Transitions
from exolam.errors import ConfigError
from exolam.models.checkpoint import load_model as load

__all__ = ["Transitions", "ConfigError", "load"]
__version__ = "0.1.0"
