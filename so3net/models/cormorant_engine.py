"""Cormorant under so3net's own engine: a ``NeuralNet`` sharing a torch :class:`Cormorant`'s weights.

``CormorantNet(model)`` holds every weight of ``model`` as an engine ``Parameter`` (the same torch
tensors: an optimiser step on one is seen by the other) and evaluates the same network with engine
ops, so energies, forces ``-∂E/∂r`` (an engine gradient with ``create_graph``) and the gradients of
a force loss (second order) come from so3net's backward walk, not torch's:

- the CG products are the engine's product ops: the CG square ``plan_product`` with the layer's
  channel-wise square plan (per atom), the message sum ``plan_message_passing`` with its channel-wise
  plan (per edge, the kernels' fused message-passing product) — a different evaluation from the
  torch model's outer strategy (:mod:`so3net.kernels.message`);
- fragment mixing is the engine's ``mix``, direct sums ``oplus``, on ``SO3vec`` Variables;
- the scalar parts written once for torch in :mod:`so3net.nn` (geometry, radial bases, the edge
  network, pair scalars, invariants, read-out MLP) run through :func:`so3net.graph.torch_fn.torch_fn`
  with the Parameters passed in (``torch.func.functional_call``).

``net(positions, species, batch)`` -> energies (M,) as a Variable; ``net.energy_and_forces(...)``.
It is slower than the torch model (per-edge products, one re-run per gradient of the bridged parts)
and meant for checking and for composing Cormorant with other engine nets, not for training.
"""
from __future__ import annotations

import torch
from torch.func import functional_call

from ..graph import NeuralNet, Parameter, Variable, grad, mix, oplus, pack, plan_message_passing, plan_product, unpack
from ..graph.torch_fn import torch_fn
from ..nn import PartNorm, edge_harmonics, edge_operand, edge_vectors, invariants, pair_dots, smooth_switch
from ..nn.positions import check_separation
from ..types import SO3vec
from .cormorant import Cormorant

__all__ = ["CormorantNet"]


class CormorantNet(NeuralNet):
    """The network of a torch :class:`Cormorant` evaluated by the engine (see the module docstring)."""

    def __init__(self, model: Cormorant):
        super().__init__()
        self._model = model
        self.weights = {name: Parameter(p) for name, p in model.named_parameters()}

    def _module(self, name: str, *args, fixed=()):
        """``model.<name>(*fixed, *args)`` with its weights as engine Parameters."""
        module = self._model.get_submodule(name)
        names = [n for n, _ in module.named_parameters()]
        k = len(args)

        def fn(*values):
            return functional_call(module, dict(zip(names, values[k:])), (*fixed, *values[:k]))
        return torch_fn(fn, *args, *[self.weights[f"{name}.{n}"] for n in names])

    def forward(self, positions, species: torch.Tensor, batch: torch.Tensor) -> Variable:
        """Energies (M,) of the molecules as a Variable; ``positions`` a Variable (or tensor) (N, 3)."""
        m, cfg = self._model, self._model.config
        C, N = cfg.num_channels, species.shape[0]
        pos = positions if isinstance(positions, Variable) else Variable(positions)
        m._check(pos.value, species, batch)
        nbrs = m.neighbours(pos.value, batch)
        dst, slot = nbrs.mask.nonzero(as_tuple=True)
        src = nbrs.src[dst, slot]
        far = 2 * cfg.hard_cut_rad + 1
        vec = torch_fn(lambda p: edge_vectors(nbrs, p, far)[0], pos)
        r = torch_fn(lambda v: v.norm(dim=-1), vec)
        check_separation(r.value, nbrs, batch)
        harmonics = torch_fn(lambda v: edge_harmonics(v, cfg.max_sh), vec)
        hard = torch_fn(lambda r: smooth_switch(r, cfg.hard_cut_rad - cfg.hard_cut_switch, cfg.hard_cut_rad), r)
        scalars = m.atom_scalars(species)
        x = self._module("embed", fixed=(scalars,))
        x = unpack(torch_fn(lambda t: torch.view_as_complex(t.reshape(N, C, 2)), x), (C,), (N,))
        edge, levels = None, []
        for s, layer in enumerate(m.cg_layers):
            tau = layer.tau_in
            dots = torch_fn(lambda xp, tau=tau: pair_dots(SO3vec.from_packed(xp, tau), nbrs.sources(xp, C)), pack(x))
            basis = self._module(f"radial.{s}", r)
            level = f"edge_levels.{s}"
            edge = (self._module(level, dots, basis, r, hard, fixed=(None,)) if edge is None
                    else self._module(level, edge, dots, basis, r, hard))
            ups = torch_fn(lambda e, y: edge_operand(e, y)[dst, slot].reshape(len(dst), -1), edge, harmonics)
            agg = plan_message_passing(unpack(ups, layer.edge_plan.tau1, (len(dst),)), x, src, dst,
                                       layer.edge_plan, num_nodes=N)
            sq = plan_product(x, x, layer.square_plan)
            W = [torch_fn(torch.view_as_complex, self.weights[f"cg_layers.{s}.weights.{l}"])
                 for l in range(len(layer.weights))]
            x = mix(oplus(agg, x, sq), *W)
            if isinstance(m.norms[s], PartNorm):
                normed = torch_fn(lambda xp, g, norm=m.norms[s], tau=layer.tau_out: functional_call(
                    norm, {"gains": g}, (SO3vec.from_packed(xp, tau),)).packed(), pack(x), self.weights[f"norms.{s}.gains"])
                x = unpack(normed, layer.tau_out, (N,))
            levels.append(x)
        taus = [layer.tau_out for layer in m.cg_layers]
        inv = torch_fn(lambda *xps: torch.cat([invariants(SO3vec.from_packed(t, tau)) for t, tau in zip(xps, taus)], 1),
                       *[pack(v) for v in levels])
        out = self._module("readout", inv)
        idx, M = m.species_to_index(species), int(batch.max()) + 1 if batch.numel() else 0
        return torch_fn(lambda o: o.new_zeros(M).index_add(0, batch.long(), o[:, 0] * m.energy_scale
                                                            + m.atom_energy[idx]), out)

    def energy_and_forces(self, positions: torch.Tensor, species: torch.Tensor, batch: torch.Tensor,
                          create_graph: bool = True) -> tuple[Variable, Variable]:
        """``(energies (M,), forces (N, 3))`` as Variables, forces ``-∂E/∂r`` by the engine's ``grad``
        (recorded with ``create_graph`` so that a force loss can be differentiated again)."""
        pos = Variable(positions, requires_grad=True)
        energies = self(pos, species, batch)
        total = torch_fn(lambda e: e.sum(), energies)
        (g,) = grad([total], [pos], create_graph=create_graph)
        return energies, -g

