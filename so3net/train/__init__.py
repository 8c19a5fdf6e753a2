"""Training: configuration, the loop (energies and forces, AMSGrad + cosine, checkpoints, resume,
data parallel), metrics and the trained :class:`Potential`."""
from .config import TrainConfig, load_config
from .loop import Trainer, train
from .potential import Potential, fit_energy_reference
from .report import evaluate

__all__ = ["TrainConfig", "load_config", "Trainer", "train", "Potential", "fit_energy_reference", "evaluate"]
