"""A trained potential: a Cormorant model plus its float64 energy reference and units.

The model learns ``(E - E_ref(composition)) `` where ``E_ref = Σ_atoms ref[Z]`` is a least-squares
fit on the training energies, kept in float64 outside the network so that large total energies
(-97,000 kcal/mol for ethanol) lose no precision in a float32 model.
"""
from __future__ import annotations

import numpy as np
import torch

from ..models import Cormorant
from .checkpoint import load_checkpoint

__all__ = ["Potential", "fit_energy_reference"]


def fit_energy_reference(dataset, species: tuple[int, ...]) -> np.ndarray:
    """Per-species reference energies (order of ``species``) by least squares of the energies on the
    element counts of each molecule (minimum-norm solution when the composition is fixed)."""
    counts = np.zeros((len(dataset), len(species)))
    mol = np.repeat(np.arange(len(dataset)), dataset.counts)
    column = {z: i for i, z in enumerate(species)}
    unknown = sorted(set(dataset.species.tolist()) - set(column))
    if unknown:
        raise ValueError(f"the data contains elements {unknown} that the model does not know ({species})")
    np.add.at(counts, (mol, [column[z] for z in dataset.species.tolist()]), 1)
    ref, *_ = np.linalg.lstsq(counts, dataset.energies, rcond=None)
    return ref


class Potential(torch.nn.Module):
    """``model`` + float64 ``reference`` per species + ``units``; energies in float64."""

    def __init__(self, model: Cormorant, reference, units: dict):
        super().__init__()
        self.model = model
        self.register_buffer("reference", torch.as_tensor(np.asarray(reference), dtype=torch.float64))
        self.units = dict(units)

    def reference_energy(self, species: torch.Tensor, batch: torch.Tensor, n_molecules: int) -> torch.Tensor:
        per_atom = self.reference[self.model.species_to_index(species)]
        return torch.zeros(n_molecules, dtype=torch.float64, device=per_atom.device).index_add(0, batch, per_atom)

    def energy_and_forces(self, positions, species, batch, create_graph=None):
        """Total energies (M,) float64 and forces (N, 3) in the model dtype."""
        energies, forces = self.model.energy_and_forces(positions, species, batch, create_graph=create_graph)
        total = energies.to(torch.float64) + self.reference_energy(species, batch, energies.shape[0])
        return total, forces

    def to_checkpoint(self) -> dict:
        return {"model_config": _config_dict(self.model.config), "model_state": self.model.state_dict(),
                "reference": self.reference.cpu().numpy(), "units": self.units,
                "dtype": str(self.model.dtype).replace("torch.", "")}

    @classmethod
    def from_checkpoint(cls, state: dict, device="cpu") -> "Potential":
        from ..models.cormorant import CormorantConfig

        cfg = dict(state["model_config"])
        cfg = CormorantConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        model = Cormorant(config=cfg).to(getattr(torch, state["dtype"]))
        model.load_state_dict(state["model_state"])
        return cls(model, state["reference"], state["units"]).to(device)

    @classmethod
    def load(cls, path, device="cpu") -> "Potential":
        state = load_checkpoint(path, map_location=device)   # verified: a damaged file raises, naming it
        if "potential" in state:
            state = state["potential"]
        return cls.from_checkpoint(state, device)


def _config_dict(config) -> dict:
    import dataclasses

    return dataclasses.asdict(config)
