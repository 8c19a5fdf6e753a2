"""Full models built from ``so3net.nn``; ``CormorantNet`` runs a Cormorant under so3net's engine."""
from .cormorant import PRESETS, Cormorant, CormorantConfig
from .cormorant_engine import CormorantNet

__all__ = ["PRESETS", "Cormorant", "CormorantConfig", "CormorantNet"]
