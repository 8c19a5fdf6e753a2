"""A trained potential: a model plus its float64 per-element energy reference and units.

The model learns ``(E - E_ref(composition))`` where ``E_ref = Σ_atoms ref[Z]`` is a least-squares
fit on the training energies (or given per-element energies, the "E0s"), kept in float64 outside
the network so that large total energies (-97,000 kcal/mol for ethanol) lose no precision in a
float32 model.

Any model class can be trained and saved: ``model_class = "package.module:Class"`` names an
``nn.Module`` whose call ``model(positions, species, batch)`` returns the energies ``(M,)`` and whose
``energy_and_forces(positions, species, batch, create_graph)`` returns ``(energies, forces)``. It is
built as ``Class(**options)`` (Cormorant: ``Cormorant(preset, **options)``), and a checkpoint stores
the class path and options so that :meth:`Potential.load` rebuilds it (the module must be importable).
"""
from __future__ import annotations

import importlib

import numpy as np
import torch

from ..models import Cormorant
from ..nn.species import species_rows, species_table
from .checkpoint import load_checkpoint
from .config import DEFAULT_MODEL_CLASS

__all__ = ["Potential", "fit_energy_reference", "import_model_class", "build_model"]


def import_model_class(path: str) -> type:
    """The class named by ``"package.module:Class"``."""
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"model_class must be 'package.module:Class', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model_class {path!r}: cannot import module {module_name!r} ({err})") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise ValueError(f"model_class {path!r}: {module_name} has no torch.nn.Module subclass {class_name!r}")
    if not callable(getattr(cls, "energy_and_forces", None)):
        raise ValueError(f"model_class {path!r}: the class has no energy_and_forces(positions, species, batch, "
                         "create_graph) method")
    return cls


def build_model(model_class: str, options: dict, preset: str | None = None) -> torch.nn.Module:
    """``Cormorant(preset, **options)`` for the default class, else ``Class(**options)``."""
    if model_class == DEFAULT_MODEL_CLASS:
        return Cormorant(preset or "qm9", **options)
    cls = import_model_class(model_class)
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"model_class {model_class!r} does not take the options {sorted(options)}: {err}") from None


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


def model_species(model: torch.nn.Module, data_species) -> tuple[int, ...]:
    """The elements a potential covers: Cormorant's ``config.species``, else those of the data."""
    config = getattr(model, "config", None)
    if isinstance(model, Cormorant) and config is not None:
        return tuple(config.species)
    return tuple(sorted({int(z) for z in data_species}))


class Potential(torch.nn.Module):
    """``model`` + float64 ``reference`` per element of ``species`` + ``units``; energies in float64."""

    def __init__(self, model: torch.nn.Module, reference, units: dict, species=None,
                 model_class: str = DEFAULT_MODEL_CLASS, model_options: dict | None = None):
        super().__init__()
        self.model = model
        self.species = tuple(int(z) for z in (species if species is not None else model.config.species))
        reference = np.asarray(reference, dtype=np.float64).reshape(-1)
        if len(reference) != len(self.species):
            raise ValueError(f"{len(reference)} reference energies for the {len(self.species)} elements {self.species}")
        self.register_buffer("reference", torch.as_tensor(reference, dtype=torch.float64))
        self.register_buffer("species_index", species_table(self.species), persistent=False)
        self.units = dict(units)
        self.model_class, self.model_options = model_class, dict(model_options or {})

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's (first floating-point) weights: positions are given in it."""
        for p in self.model.parameters():
            if p.dtype.is_floating_point:
                return p.dtype
        return torch.get_default_dtype()

    def species_to_index(self, species: torch.Tensor) -> torch.Tensor:
        return species_rows(self.species_index, species, f"this potential's elements {self.species}")

    def reference_energy(self, species: torch.Tensor, batch: torch.Tensor, n_molecules: int) -> torch.Tensor:
        per_atom = self.reference[self.species_to_index(species)]
        return torch.zeros(n_molecules, dtype=torch.float64, device=per_atom.device).index_add(0, batch, per_atom)

    def energy_and_forces(self, positions, species, batch, create_graph=None):
        """Total energies (M,) float64 and forces (N, 3) in the model dtype."""
        energies, forces = self.model.energy_and_forces(positions, species, batch, create_graph=create_graph)
        total = energies.to(torch.float64) + self.reference_energy(species, batch, energies.shape[0])
        return total, forces

    def to_checkpoint(self, model_state: dict | None = None) -> dict:
        """Everything :meth:`from_checkpoint` needs; ``model_state`` replaces the model's own weights
        (the trainer passes the EMA weights)."""
        state = {"model_class": self.model_class, "model_options": self.model_options, "species": self.species,
                 "model_state": self.model.state_dict() if model_state is None else model_state,
                 "reference": self.reference.cpu().numpy(), "units": self.units,
                 "dtype": str(self.dtype).replace("torch.", "")}
        if isinstance(self.model, Cormorant):
            state["model_config"] = _config_dict(self.model.config)
        return state

    @classmethod
    def from_checkpoint(cls, state: dict, device="cpu") -> "Potential":
        from ..models.cormorant import CormorantConfig

        model_class = state.get("model_class", DEFAULT_MODEL_CLASS)
        if model_class == DEFAULT_MODEL_CLASS:
            cfg = dict(state["model_config"])
            cfg = CormorantConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
            model = Cormorant(config=cfg)
        else:
            model = build_model(model_class, state["model_options"])
        model = model.to(getattr(torch, state["dtype"]))
        model.load_state_dict(state["model_state"])
        return cls(model, state["reference"], state["units"], state.get("species"), model_class,
                   state.get("model_options")).to(device)

    @classmethod
    def load(cls, path, device="cpu") -> "Potential":
        state = load_checkpoint(path, map_location=device)   # verified: a damaged file raises, naming it
        if "potential" in state:
            state = state["potential"]
        return cls.from_checkpoint(state, device)


def _config_dict(config) -> dict:
    import dataclasses

    return dataclasses.asdict(config)
