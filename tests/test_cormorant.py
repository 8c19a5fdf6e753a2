"""The Cormorant model: invariance of energies, equivariance of every hidden layer, forces against
finite differences, independence of molecules in a batch, second-order training, a smoke
training run on the sGDML ethanol set, and the configuration's checks."""
import dataclasses
import os
import pathlib

import numpy as np
import pytest
import torch

from so3net.kernels.message import Neighbours
from so3net.models import PRESETS, Cormorant, CormorantConfig
from so3net.wigner import random_rotation, wigner_D_from_matrix

from helpers import molecules

ETHANOL = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "ethanol_ccsd_t-train.npz"
SMALL = dict(num_cg_levels=2, num_channels=3, maxl=2, max_sh=2)


def model_for(dtype, seed=0, **overrides):
    torch.manual_seed(seed)
    return Cormorant("qm9", **{**SMALL, **overrides}).to(dtype)


def rel_err(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


# ------------------------------------------------------------------ invariance and equivariance
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_energy_is_invariant_to_rotation_translation_and_permutation(dtype, tol):
    model = model_for(dtype)
    pos, species, batch = molecules([7, 5, 9], seed=1, dtype=dtype)
    energy = model(pos, species, batch)
    assert energy.shape == (3,) and energy.dtype == dtype
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(2)).to(dtype)
    shift = torch.tensor([0.7, -2.0, 3.1], dtype=dtype)
    assert rel_err(model(pos @ R.T + shift, species, batch), energy) < tol
    perm = torch.randperm(len(pos), generator=torch.Generator().manual_seed(3))
    assert rel_err(model(pos[perm], species[perm], batch[perm]), energy) < tol


def test_the_paper_preset_is_invariant_in_float32():
    torch.manual_seed(0)
    model = Cormorant("qm9")
    pos, species, batch = molecules([9, 6], seed=4, dtype=torch.float32)
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(5)).float()
    assert rel_err(model(pos @ R.T, species, batch), model(pos, species, batch)) < 1e-5


def test_every_hidden_layer_is_equivariant():
    model = model_for(torch.float64, num_cg_levels=3)
    pos, species, batch = molecules([6, 8], seed=6)
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    for x, xr, layer in zip(model.features(pos, species, batch), model.features(pos @ R.T, species, batch),
                            model.cg_layers):
        assert tuple(x.tau) == layer.tau_out
        parts, rotated = x.parts, xr.parts
        for l, p in parts.items():
            assert float(p.detach().abs().max()) > 1e-8, f"part {l} is zero: the check would be vacuous"
            D = wigner_D_from_matrix(l, R).to(p.dtype)
            assert rel_err(rotated[l], D @ p) < 1e-10, f"level output part l={l} is not equivariant"


# ------------------------------------------------------------------ forces
def test_forces_equal_finite_differences_and_are_equivariant():
    model = model_for(torch.float64).eval()   # eval: forces without a graph for second derivatives
    pos, species, batch = molecules([6, 4], seed=8)
    energy, forces = model.energy_and_forces(pos, species, batch)
    assert forces.shape == pos.shape and not forces.requires_grad
    h = 1e-5
    for atom, axis in [(0, 0), (3, 2), (7, 1), (9, 0)]:
        plus, minus = pos.clone(), pos.clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        with torch.no_grad():
            fd = -(model(plus, species, batch).sum() - model(minus, species, batch).sum()) / (2 * h)
        assert abs(float(forces[atom, axis] - fd)) < 1e-7 * max(1.0, float(forces.abs().max()))
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    _, rotated = model.energy_and_forces(pos @ R.T, species, batch)
    assert rel_err(rotated, forces @ R.T) < 1e-10
    for b in range(2):  # no net force on an isolated molecule
        assert float(forces[batch == b].sum(0).abs().max()) < 1e-10 * float(forces.abs().max())


def test_force_loss_trains_by_second_order_gradients():
    """The gradient of a force loss with respect to a weight equals its finite difference."""
    model = model_for(torch.float64).train()
    pos, species, batch = molecules([5, 4], seed=10)
    target = torch.randn(pos.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(11))

    def loss():
        _, forces = model.energy_and_forces(pos, species, batch)
        return ((forces - target) ** 2).sum()

    weight = model.edge_levels[0].w_rad
    (grad,) = torch.autograd.grad(loss(), weight)
    assert float(grad.abs().max()) > 0
    index, h = (3, 1), 1e-6
    with torch.no_grad():
        weight[index] += h
        up = float(loss())
        weight[index] -= 2 * h
        down = float(loss())
        weight[index] += h
    assert abs(float(grad[index]) - (up - down) / (2 * h)) < 1e-6 * max(1.0, float(grad.abs().max()))


# ------------------------------------------------------------------ batching
def test_molecules_in_a_batch_do_not_influence_each_other():
    model = model_for(torch.float64)
    pos, species, batch = molecules([6, 5, 7], seed=12)
    energy, forces = (t.detach() for t in model.energy_and_forces(pos, species, batch))
    for b in range(3):
        sel = batch == b
        alone, f_alone = (t.detach() for t in model.energy_and_forces(pos[sel], species[sel],
                                                                      torch.zeros(int(sel.sum()), dtype=torch.long)))
        assert abs(float(alone[0] - energy[b])) < 1e-12 * max(1.0, abs(float(energy[b])))
        assert float((f_alone - forces[sel]).abs().max()) < 1e-12 * float(forces.abs().max())
    moved = pos.clone()  # molecule 1 placed on top of molecule 0 changes nothing for molecule 0
    moved[batch == 1] = pos[batch == 0][:5] + 0.01
    with torch.no_grad():
        assert abs(float(model(moved, species, batch)[0] - energy[0])) < 1e-12 * abs(float(energy[0]))


def test_isolated_atoms_and_empty_batches():
    model = model_for(torch.float64)
    species = torch.tensor([1, 6, 8])
    far_apart = torch.tensor([[0.0, 0, 0], [10, 0, 0], [20, 0, 0]], dtype=torch.float64)
    energy, forces = (t.detach() for t in model.energy_and_forces(far_apart, species, torch.tensor([0, 0, 1])))
    assert energy.shape == (2,) and float(forces.abs().max()) == 0
    with torch.no_grad():
        single = [model(far_apart[i:i + 1], species[i:i + 1], torch.zeros(1, dtype=torch.long)) for i in range(3)]
    assert abs(float(energy[0] - single[0][0] - single[1][0])) < 1e-12
    empty = torch.zeros(0, dtype=torch.long)
    energy, forces = model.energy_and_forces(torch.zeros(0, 3, dtype=torch.float64), empty, empty)
    assert energy.shape == (0,) and forces.shape == (0, 3)


# ------------------------------------------------------------------ configuration
def test_presets_and_overrides():
    qm9 = Cormorant("qm9").config
    assert (qm9.num_cg_levels, qm9.maxl, qm9.max_sh, qm9.num_channels, qm9.basis_set) == (4, 3, 3, 10, (3, 3))
    assert (qm9.soft_cut_rad, qm9.soft_cutoff, qm9.level_gain) == (1.73, "learn", 10.0)
    assert PRESETS["md17"].readout_hidden == () and Cormorant("md17", num_channels=4).config.num_channels == 4
    cfg = dataclasses.asdict(Cormorant("md17", num_cg_levels=1).config)
    restored = Cormorant(config=CormorantConfig(**cfg))
    assert restored.config.num_cg_levels == 1 and len(restored.cg_layers) == 1
    with pytest.raises(ValueError, match="unknown Cormorant options"):
        Cormorant("qm9", channels=3)
    with pytest.raises(ValueError, match="preset must be one of"):
        Cormorant("qm7")
    with pytest.raises(ValueError, match="soft_cutoff must be one of"):
        Cormorant("qm9", soft_cutoff="maybe")


def test_inputs_are_checked():
    model = model_for(torch.float32)
    pos, species, batch = molecules([4], seed=13, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"atomic numbers \[17\]"):
        model(pos, torch.tensor([1, 6, 17, 8]), batch)
    with pytest.raises(ValueError, match="model is torch.float32"):
        model(pos.double(), species, batch)
    with pytest.raises(ValueError, match=r"positions must have shape \(N, 3\)"):
        model(pos[:, :2], species, batch)


def test_options_change_the_network_and_keep_it_invariant():
    pos, species, batch = molecules([6, 5], seed=14)
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    for overrides in (dict(radial="bessel", soft_cutoff="none"), dict(norm="part", readout_hidden=(8,)),
                      dict(soft_cutoff="fixed", hard_cut_switch=0.0, activation="silu")):
        model = model_for(torch.float64, **overrides)
        energy = model(pos, species, batch)
        assert rel_err(model(pos @ R.T, species, batch), energy) < 1e-10


# ------------------------------------------------------------------ training
@pytest.mark.slow
@pytest.mark.skipif(not ETHANOL.exists(), reason=f"optional sGDML ethanol file {ETHANOL} is not on this machine "
                    "(not shipped: ../shared/data beside the clone)")
def test_training_on_ethanol_lowers_the_test_error():
    """Smoke test: 150 + 50 configurations of sGDML ethanol, energies and forces; the test energy MAE
    falls after each of the first three epochs."""
    data = np.load(ETHANOL)
    R = torch.tensor(data["R"][:200], dtype=torch.float32)
    F = torch.tensor(data["F"][:200], dtype=torch.float32)
    E = torch.tensor(data["E"][:200, 0], dtype=torch.float64)
    z = torch.tensor(data["z"].astype(np.int64))
    train, test = np.arange(150), np.arange(150, 200)
    target = (E - E[train].mean()).float()   # the mean goes to a float64 reference, as in so3net.train
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                 # one thread: a reproducible order of float32 sums
    try:
        torch.manual_seed(0)
        model = Cormorant("md17", num_cg_levels=2, num_channels=3, maxl=2, max_sh=2, edge_gain=10.0, level_gain=1.0)
        model.set_energy_reference(scale=float(E[train].std()))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, amsgrad=True)

        def inputs(idx):
            return R[idx].reshape(-1, 3), z.repeat(len(idx)), torch.arange(len(idx)).repeat_interleave(len(z))

        def test_mae():
            with torch.no_grad():
                return float((model(*inputs(test)) - target[test]).abs().mean())

        maes, order = [test_mae()], torch.Generator().manual_seed(0)
        for _ in range(3):
            for idx in train[torch.randperm(150, generator=order).numpy()].reshape(-1, 5):
                opt.zero_grad()
                energy, forces = model.energy_and_forces(*inputs(idx))
                loss = ((energy - target[idx]) ** 2).mean() / E[train].var().item() \
                    + ((forces - F[idx].reshape(-1, 3)) ** 2).mean() / F.var().item()
                loss.backward()
                opt.step()
            maes.append(test_mae())
    finally:
        torch.set_num_threads(threads)
    assert all(b < a for a, b in zip(maes, maes[1:])), f"test MAE per epoch: {maes}"


# ------------------------------------------------------------------ the CUDA path (Triton kernels)
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs the Triton interpreter (CPU run)")
def test_triton_backend_gives_the_same_energies_and_forces(monkeypatch):
    """Under the triton backend (the CUDA path; here the Triton interpreter on CPU tensors) the CG
    layers run the kernels' fused products instead of the outer strategy: same energies and forces."""
    from so3net.kernels import backend
    from so3net.kernels.message import strategy
    model = model_for(torch.float64, num_channels=2, maxl=1, max_sh=1)
    pos, species, batch = molecules([5, 2, 3], seed=11)
    buckets = Neighbours.buckets                      # split even these few slots: several lists on both paths
    monkeypatch.setattr(Neighbours, "buckets", lambda self, k: buckets(self, k, min_saving=0.0, min_slots=1))
    assert len(model.neighbours(pos, batch).buckets(model.neighbour_buckets)) > 1
    e_outer, f_outer = model.energy_and_forces(pos, species, batch, create_graph=False)
    with backend("triton"):
        assert strategy(pos) == "fused"
        e_fused, f_fused = model.energy_and_forces(pos, species, batch, create_graph=False)
    assert strategy(pos) == "outer"
    assert rel_err(e_fused, e_outer) < 1e-10 and rel_err(f_fused, f_outer) < 1e-10


def test_bucketed_neighbour_lists_give_the_same_energies_forces_and_gradients():
    """Grouping atoms by neighbour count (Neighbours.buckets, the default) is an evaluation choice:
    energies, forces and the weights' gradients of a force loss equal those of one padded list of
    all atoms (float64), with molecules of very different sizes and a lone atom without neighbours."""
    model = model_for(torch.float64)
    pos, species, batch = molecules([12, 2, 6, 1, 9], seed=4)
    pos[20] += 50.0                                      # the one-atom molecule, far from everything
    results = []
    for buckets in (3, 1):
        model.neighbour_buckets = buckets
        lists = model.neighbours(pos, batch).buckets(buckets)
        assert len(lists) > 1 if buckets == 3 else lists[0].dst is None     # 1: the single list of all atoms
        model.zero_grad()
        energies, forces = model.energy_and_forces(pos, species, batch, create_graph=True)
        (energies.square().sum() + forces.square().sum()).backward()
        results.append((energies, forces, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        results[-1] += (model.atom_energies(pos, species, batch), model.features(pos, species, batch))
    (e3, f3, g3, a3, x3), (e1, f1, g1, a1, x1) = results
    assert rel_err(e3, e1) < 1e-12 and rel_err(f3, f1) < 1e-12
    assert rel_err(a3, a1) < 1e-12                       # per atom, in the order given, though evaluated grouped
    assert all(rel_err(u.packed(), v.packed()) < 1e-12 for u, v in zip(x3, x1))
    assert len(g3) == len(g1) and all(rel_err(a, b) < 1e-10 for a, b in zip(g3, g1))
