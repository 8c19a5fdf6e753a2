"""An ASE calculator for a trained so3net potential: ``atoms.calc = Calculator("runs/latest/best_model.pt")``.

Energies are returned in eV and forces in eV/Å, as ASE expects, converted from the units the
model was trained in (kcal/mol, Hartree or eV with Å or Bohr).
"""
from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator as _AseCalculator, all_changes

from .data import energy_factor, length_factor
from .train import Potential

__all__ = ["Calculator"]


class Calculator(_AseCalculator):
    """ASE calculator: ``Calculator(model)`` with a path to a saved model or a :class:`Potential`."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, model, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.potential = model if isinstance(model, Potential) else Potential.load(model, device)
        self.potential.model.eval()
        self.device = device
        units = self.potential.units
        self._energy = energy_factor(units["energy"], "eV")
        self._length = length_factor("Angstrom", units["length"])

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        dtype = self.potential.dtype
        pos = torch.as_tensor(self.atoms.get_positions() * self._length, dtype=dtype, device=self.device)
        species = torch.as_tensor(self.atoms.get_atomic_numbers(), dtype=torch.long, device=self.device)
        batch = torch.zeros(len(species), dtype=torch.long, device=self.device)
        energy, forces = self.potential.energy_and_forces(pos, species, batch, create_graph=False)
        self.results["energy"] = float(energy.detach()[0]) * self._energy
        self.results["forces"] = forces.detach().cpu().double().numpy() * self._energy * self._length
        self.results["free_energy"] = self.results["energy"]
