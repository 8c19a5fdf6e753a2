"""Cormorant under so3net's engine (CormorantNet, a NeuralNet) against the torch model, float64:
energies, forces and the parameter gradients of a force loss (second order) agree to 1e-10; the
engine evaluates the CG products per atom and per edge (the kernels' products), the torch model by
the outer strategy, so the check covers two product algorithms and two backward walks."""
import pytest
import torch

from so3net.graph import Variable, backward
from so3net.kernels.message import Neighbours
from so3net.graph import torch_fn
from so3net.models import Cormorant
from so3net.models import CormorantNet

from test_cormorant import molecules


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("overrides, grouped", [
    (dict(num_cg_levels=2, num_channels=2, maxl=2, max_sh=2), False),
    (dict(num_cg_levels=2, num_channels=2, maxl=1, max_sh=2, norm="part", readout_hidden=()), False),
    (dict(num_cg_levels=2, num_channels=2, maxl=1, max_sh=1), True)])
def test_engine_net_equals_torch_model_to_second_order(overrides, grouped, monkeypatch):
    """``grouped``: the torch model evaluates with its atoms renumbered into neighbour-count buckets
    (forced here on molecules of different sizes, atoms of the molecules interleaved)."""
    torch.manual_seed(0)
    model = Cormorant("qm9", **overrides).double()
    pos, species, batch = molecules([4, 3], seed=1)
    if grouped:
        buckets = Neighbours.buckets
        monkeypatch.setattr(Neighbours, "buckets", lambda self, k: buckets(self, k, min_saving=0.0, min_slots=1))
        pos, species, batch = molecules([6, 2, 4], seed=3)
        shuffle = torch.randperm(len(batch), generator=torch.Generator().manual_seed(0))
        pos, species, batch = pos[shuffle], species[shuffle], batch[shuffle]
        assert model.neighbours(pos, batch).grouped(model.neighbour_buckets)[0] is not None
    energies, forces = model.energy_and_forces(pos, species, batch, create_graph=True)
    loss = (energies ** 2).sum() + (forces ** 2).sum()
    want = torch.autograd.grad(loss, list(model.parameters()))

    net = CormorantNet(model)
    e, f = net.energy_and_forces(pos, species, batch)
    assert rel(e.value, energies.detach()) < 1e-10
    assert rel(f.value, forces.detach()) < 1e-10
    model.zero_grad(set_to_none=True)
    backward([torch_fn(lambda e, f: (e ** 2).sum() + (f ** 2).sum(), e, f)])
    for (name, p), w in zip(model.named_parameters(), want):
        assert p.grad is not None, name
        assert float(w.abs().max()) > 0, f"{name}: zero gradient, the check would be vacuous"
        assert rel(p.grad, w) < 1e-10, name


def test_engine_net_shares_the_weights():
    torch.manual_seed(1)
    model = Cormorant("md17", num_cg_levels=1, num_channels=2, maxl=1, max_sh=1).double()
    net = CormorantNet(model)
    assert [p.tensor for p in net.weights.values()] == list(model.parameters())
    pos, species, batch = molecules([3], seed=2)
    with torch.no_grad():
        model.embed.bias.add_(0.5)
    assert rel(net(Variable(pos), species, batch).value, model(pos, species, batch).detach()) < 1e-10
