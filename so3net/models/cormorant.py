"""Cormorant (Anderson, Hy & Kondor, NeurIPS 2019) over sparse neighbour lists, with forces.

``Cormorant(preset="qm9" | "md17", **overrides)`` builds the network from one
:class:`CormorantConfig`. Input: ``positions (N, 3)`` (Å), ``species (N,)`` atomic numbers,
``batch (N,)`` molecule index of each atom (molecules flattened, any order; M = batch.max() + 1).
Output: energies ``(M,)``. ``energy_and_forces`` adds forces ``F = -∂E/∂r`` ``(N, 3)``, built with
``create_graph`` while training so that a force term in the loss trains the weights.

Pipeline: species one-hot × charge powers ``(Z / charge_scale)^p``, p = 0..charge_power -> linear ->
complex l = 0 features; radius graph (``hard_cut_rad``, per molecule); ``num_cg_levels`` pairs of
(:class:`~so3net.nn.EdgeLevel`, :class:`~so3net.nn.CGLayer`); invariants of every level's atom
features (and, with ``sym_power = K > 0``, those of the weighted symmetric contraction
Σ_ν w_Z Sym^ν(F) of the last ``sym_power_levels`` levels' features, :class:`~so3net.nn.SymPowerReadout`,
docs/cormorant.md) -> per-atom MLP -> ``energy_scale`` × sum over the molecule's atoms + Σ ``atom_energy[Z]``.
Complex features use the complex basis of DESIGN.md (complex64 for float32 weights, complex128
after ``.double()``).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from ..data.neighbors import radius_graph
from ..kernels.message import EdgeFactors, fused, higher_order
from ..nn import (AtomMLP, BesselBasis, CGLayer, EdgeLevel, Neighbours, PartNorm, RadPolyTrig, SoftCutoff,
                  SymPowerReadout, edge_harmonics, edge_vectors, invariants, num_invariants, pair_dots,
                  smooth_switch)
from ..nn.positions import check_finite_positions, check_separation
from ..nn.species import species_rows, species_table
from ..nn.radial import SOFT_MODES
from ..types import SO3vec

__all__ = ["CormorantConfig", "PRESETS", "Cormorant"]


@dataclass(frozen=True)
class CormorantConfig:
    """All hyperparameters of the model; the presets are the paper's QM9 and MD17 settings.

    Cutoffs: the neighbour list keeps pairs closer than ``hard_cut_rad``; edge scalars are
    multiplied by a C¹ switch from 1 at ``hard_cut_rad - hard_cut_switch`` to 0 at
    ``hard_cut_rad`` (0 gives a sharp cut) and by Cormorant's sigmoid soft cutoff
    (``soft_cutoff`` in "none", "fixed", "learn", "learn_rad", "learn_width"; radius and width
    start at ``soft_cut_rad``, ``soft_cut_width``). The original uses all pairs with the
    learned soft cutoff; at 3 Å its mask is below 2e-3 of its value at bond lengths.
    """
    num_cg_levels: int = 4
    maxl: int = 3
    max_sh: int = 3
    num_channels: int = 10
    species: tuple[int, ...] = (1, 6, 7, 8, 9)
    charge_power: int = 2
    charge_scale: float | None = None          # None: max(species)
    radial: str = "polytrig"                   # "polytrig" (Cormorant) | "bessel"
    basis_set: tuple[int, int] = (3, 3)        # polytrig (trig, power)
    num_bessel: int = 8
    hard_cut_rad: float = 3.0
    hard_cut_switch: float = 0.5
    soft_cutoff: str = "learn"
    soft_cut_rad: float = 1.73
    soft_cut_width: float = 0.2
    weight_init: str = "rand"
    level_gain: float = 10.0
    edge_init: str = "randn"
    edge_gain: float = 1.0
    norm: str = "none"                         # "none" | "part" (PartNorm after each CG layer)
    readout_hidden: tuple[int, ...] = (256,)
    activation: str = "leakyrelu"
    sym_power: int = 0                         # K > 0: symmetric-power read-out Σ_{ν<=K} w_Z Sym^ν(F) (0: off)
    sym_power_levels: int = 1                  # ... of the features of the last this many CG levels

    def __post_init__(self):
        if self.num_cg_levels < 1 or self.maxl < 0 or self.max_sh < 0 or self.num_channels < 1:
            raise ValueError(f"need num_cg_levels >= 1, maxl >= 0, max_sh >= 0, num_channels >= 1; got {self}")
        if self.radial not in ("polytrig", "bessel"):
            raise ValueError(f"radial must be 'polytrig' or 'bessel', got {self.radial!r}")
        if self.soft_cutoff not in SOFT_MODES:
            raise ValueError(f"soft_cutoff must be one of {SOFT_MODES}, got {self.soft_cutoff!r}")
        if self.norm not in ("none", "part"):
            raise ValueError(f"norm must be 'none' or 'part', got {self.norm!r}")
        if self.hard_cut_rad <= 0 or not 0 <= self.hard_cut_switch <= self.hard_cut_rad:
            raise ValueError(f"need hard_cut_rad > 0 and 0 <= hard_cut_switch <= hard_cut_rad, "
                             f"got {self.hard_cut_rad} and {self.hard_cut_switch}")
        if self.sym_power < 0 or (self.sym_power and not 1 <= self.sym_power_levels <= self.num_cg_levels):
            raise ValueError(f"need sym_power >= 0 (0: off) and 1 <= sym_power_levels <= num_cg_levels; got "
                             f"sym_power={self.sym_power}, sym_power_levels={self.sym_power_levels}, "
                             f"num_cg_levels={self.num_cg_levels}")
        if len(set(self.species)) != len(self.species) or min(self.species) < 1:
            raise ValueError(f"species must be distinct atomic numbers >= 1, got {self.species}")


PRESETS = {
    "qm9": CormorantConfig(),
    "md17": CormorantConfig(species=(1, 6, 7, 8), readout_hidden=()),
}


class Cormorant(nn.Module):
    """The Cormorant network (see module doc). ``Cormorant(preset, **overrides)`` or ``Cormorant(config=cfg)``."""

    def __init__(self, preset: str = "qm9", config: CormorantConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            if preset not in PRESETS:
                raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
            config = PRESETS[preset]
        names = {f.name for f in fields(CormorantConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown Cormorant options {unknown}; valid options are {sorted(names)}")
        self.config = cfg = replace(config, **overrides)
        self.neighbour_buckets = 3   # padded neighbour lists per batch (Neighbours.buckets): evaluation only
        C, L = cfg.num_channels, cfg.num_cg_levels
        self.species_index = nn.Buffer(species_table(cfg.species), persistent=False)
        self.embed = nn.Linear(len(cfg.species) * (cfg.charge_power + 1), 2 * C)
        self.radial = nn.ModuleList(self._radial() for _ in range(L))
        num_basis = self.radial[0].num_basis
        self.edge_levels, self.cg_layers, self.norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        tau, tau_edge = (C,), (C,) * (cfg.max_sh + 1)
        for level in range(L):
            soft = None if cfg.soft_cutoff == "none" else SoftCutoff(C, cfg.soft_cut_rad, cfg.soft_cut_width, cfg.soft_cutoff)
            self.edge_levels.append(EdgeLevel(C if level else 0, sum(tau), num_basis, C, cfg.max_sh, soft, cfg.edge_init,
                                              cfg.edge_gain))
            layer = CGLayer(tau, tau_edge, cfg.maxl, C, cfg.weight_init, cfg.level_gain)
            self.cg_layers.append(layer)
            self.norms.append(PartNorm(layer.tau_out) if cfg.norm == "part" else nn.Identity())
            tau = layer.tau_out
        self.sym_powers = nn.ModuleList(SymPowerReadout(C, cfg.maxl, cfg.sym_power, len(cfg.species))
                                        for _ in range(cfg.sym_power_levels if cfg.sym_power else 0))
        self.readout = AtomMLP(sum(num_invariants(l.tau_out) for l in self.cg_layers)
                               + sum(p.num_out for p in self.sym_powers), cfg.readout_hidden, 1, cfg.activation)
        self.energy_scale = nn.Buffer(torch.ones(()))
        self.atom_energy = nn.Buffer(torch.zeros(len(cfg.species)))

    def _radial(self) -> nn.Module:
        cfg = self.config
        if cfg.radial == "polytrig":
            return RadPolyTrig(cfg.basis_set)
        return BesselBasis(cfg.num_bessel, cfg.hard_cut_rad)

    # ------------------------------------------------------------------ inputs
    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    def species_to_index(self, species: torch.Tensor) -> torch.Tensor:
        """Row of each atomic number in ``config.species``; raises on unknown elements."""
        return species_rows(self.species_index, species, f"this model's species {self.config.species}")

    def atom_scalars(self, species: torch.Tensor) -> torch.Tensor:
        """One-hot species times charge powers ``(Z / charge_scale)^p``: (N, S (charge_power + 1))."""
        cfg = self.config
        idx = self.species_to_index(species)
        scale = cfg.charge_scale or max(cfg.species)
        z = species.to(self.dtype)[:, None] / scale
        powers = z ** torch.arange(cfg.charge_power + 1, device=z.device, dtype=self.dtype)
        one_hot = nn.functional.one_hot(idx, len(cfg.species)).to(self.dtype)
        return (one_hot[:, :, None] * powers[:, None, :]).flatten(1)

    def _check(self, positions, species, batch):
        N = positions.shape[0]
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError(f"positions must have shape (N, 3), got {tuple(positions.shape)}")
        if positions.dtype != self.dtype:
            raise ValueError(f"positions have dtype {positions.dtype} but the model is {self.dtype}; "
                             f"convert one of them (model.to(torch.float64) or positions.to({self.dtype}))")
        if species.shape != (N,) or batch.shape != (N,):
            raise ValueError(f"species and batch must have shape ({N},), got {tuple(species.shape)} and {tuple(batch.shape)}")
        check_finite_positions(positions, batch)

    # ------------------------------------------------------------------ forward
    def neighbours(self, positions: torch.Tensor, batch: torch.Tensor) -> Neighbours:
        """Padded neighbour lists of the radius graph (``hard_cut_rad``, within each molecule)."""
        src, dst = radius_graph(positions.detach(), batch, self.config.hard_cut_rad)
        return Neighbours.from_edges(src, dst, positions.shape[0])

    def _evaluate(self, positions: torch.Tensor, species: torch.Tensor,
                  batch: torch.Tensor) -> tuple[list[SO3vec], torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(levels, order, species, batch)``: the atom features after each CG layer with the atoms
        in the evaluation's order, ``order[i]`` the row of the input of atom i (None: as given), and
        ``species``, ``batch`` in that order. The atoms are grouped by neighbour count
        (:meth:`Neighbours.grouped`, ``neighbour_buckets`` lists) so that every list reads and writes
        consecutive atoms."""
        self._check(positions, species, batch)
        cfg, C = self.config, self.config.num_channels
        given_batch = batch
        order, lists = self.neighbours(positions, batch).grouped(self.neighbour_buckets)
        if order is not None:
            positions, species, batch = positions.index_select(0, order), species[order], batch[order]
        geometry = []   # per list: (r, hard cutoff factor, harmonics (n, d, D))
        for nbrs in lists:
            vec, r = edge_vectors(nbrs, positions, far=2 * cfg.hard_cut_rad + 1)
            check_separation(r, nbrs, given_batch, order=order)
            harmonics = edge_harmonics(vec, cfg.max_sh)
            geometry.append((r, smooth_switch(r, cfg.hard_cut_rad - cfg.hard_cut_switch, cfg.hard_cut_rad), harmonics))
        x = torch.view_as_complex(self.embed(self.atom_scalars(species)).reshape(-1, C, 2))
        x = SO3vec.from_packed(x, (C,))
        edges, levels = [None] * len(lists), []
        for radial, edge_level, layer, norm in zip(self.radial, self.edge_levels, self.cg_layers, self.norms):
            xp = x.packed()   # the compiled kernels read it in place; the torch ops share one gather per list
            sources = [None] * len(lists) if fused(xp) else [nbrs.sources(xp, C) for nbrs in lists]
            edges = [edge_level(e, pair_dots(x, s, nbrs), radial(r), r, hard)
                     for e, s, nbrs, (r, hard, _) in zip(edges, sources, lists, geometry)]
            ups = [EdgeFactors(e, harmonics) for e, (_, _, harmonics) in zip(edges, geometry)]
            x = norm(layer(x, ups, lists, sources))
            levels.append(x)
        return levels, order, species, batch

    def features(self, positions: torch.Tensor, species: torch.Tensor, batch: torch.Tensor) -> list[SO3vec]:
        """Atom features after each CG layer: ``SO3vec``s of batch (N,) and type ``(C,) * (maxl + 1)``,
        atoms in the order given."""
        levels, order, _, _ = self._evaluate(positions, species, batch)
        if order is None:
            return levels
        back = torch.argsort(order)
        return [SO3vec.from_packed(x.packed().index_select(0, back), x.tau, basis=x.basis) for x in levels]

    def _atom_energies(self, positions: torch.Tensor, species: torch.Tensor,
                       batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(energies, order, batch)`` of the atoms in the evaluation's order (see :meth:`_evaluate`)."""
        levels, order, species, batch = self._evaluate(positions, species, batch)
        inv = [invariants(x) for x in levels]
        if len(self.sym_powers):
            idx = self.species_to_index(species)
            inv += [power(x, idx) for x, power in zip(levels[len(levels) - len(self.sym_powers):], self.sym_powers)]
        inv = torch.cat(inv, 1)
        out = self.readout(inv)[:, 0] * self.energy_scale
        return out + self.atom_energy[self.species_to_index(species)], order, batch

    def atom_energies(self, positions: torch.Tensor, species: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Energy contribution of every atom, (N,), atoms in the order given."""
        e_atom, order, _ = self._atom_energies(positions, species, batch)
        return e_atom if order is None else e_atom.index_select(0, torch.argsort(order))

    def forward(self, positions: torch.Tensor, species: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Energies of the molecules, (M,) with M = batch.max() + 1."""
        e_atom, _, atom_batch = self._atom_energies(positions, species, batch)
        M = int(batch.max()) + 1 if batch.numel() else 0
        return e_atom.new_zeros(M).index_add(0, atom_batch.to(torch.long), e_atom)

    def energy_and_forces(self, positions: torch.Tensor, species: torch.Tensor, batch: torch.Tensor,
                          create_graph: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(energies (M,), forces (N, 3))`` with ``forces = -∂E/∂positions``.

        ``create_graph`` (default: training mode with grad enabled) keeps the graph of the forces so
        that a loss on them can be back-propagated to the weights (second-order autograd).
        """
        if create_graph is None:
            create_graph = self.training and torch.is_grad_enabled()
        with torch.enable_grad(), (higher_order() if create_graph else nullcontext()):
            pos = positions if positions.requires_grad else positions.detach().requires_grad_(True)
            energies = self(pos, species, batch)
            (grad,) = torch.autograd.grad(energies.sum(), pos, create_graph=create_graph)
        return energies, -grad

    def set_energy_reference(self, atom_energy: torch.Tensor | None = None, scale: float | None = None) -> None:
        """Set the per-species reference energies (order of ``config.species``) and the output scale."""
        with torch.no_grad():
            if atom_energy is not None:
                self.atom_energy.copy_(torch.as_tensor(atom_energy, dtype=self.atom_energy.dtype))
            if scale is not None:
                self.energy_scale.fill_(float(scale))
