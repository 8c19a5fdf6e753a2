"""Full models built from ``so3net.nn``."""
from .cormorant import PRESETS, Cormorant, CormorantConfig
