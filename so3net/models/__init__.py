"""Full models built from ``so3net.nn``."""
from .cormorant import PRESETS, Cormorant, CormorantConfig

__all__ = ["PRESETS", "Cormorant", "CormorantConfig"]
