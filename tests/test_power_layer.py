"""The symmetric-power read-out (issue 16): equivariance of the contraction B = Σ_ν w_Z Sym^ν(F),
its degree, and Cormorant with ``sym_power``: invariant energies, equivariant forces, training and
saving through the trainer."""
import os

import pytest
import torch

from so3net.models import Cormorant
from so3net.nn import SymPowerReadout, invariants
from so3net.train import Potential, TrainConfig, Trainer
from so3net.types import SO3vec
from so3net.wigner import random_rotation

from helpers import molecules



def rel_err(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


def random_features(n, channels, maxl, seed):
    g = torch.Generator().manual_seed(seed)
    return SO3vec.randn(n, (channels,) * (maxl + 1), dtype=torch.complex128, generator=g)


def rotate(x, tau, R):
    assert x.tau == tau
    return x.rotate(R)


@pytest.mark.parametrize("correlation", [2, 3])
def test_contraction_is_equivariant_and_invariants_are_invariant(correlation):
    torch.manual_seed(0)
    layer = SymPowerReadout(channels=3, maxl=2, correlation=correlation, num_species=2).double()
    x, species = random_features(5, 3, 2, seed=1), torch.tensor([0, 1, 1, 0, 1])
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    b, b_rot = layer.contract(x, species), layer.contract(rotate(x, layer.tau, R), species)
    for L, part in b.parts.items():
        assert float(part.detach().abs().max()) > 1e-6, f"part {L} is zero: the check would be vacuous"
    assert rel_err(b_rot.packed(), rotate(b, layer.tau, R).packed()) < 1e-12
    inv = layer(x, species)
    assert inv.shape == (5, layer.num_out) and inv.dtype == torch.float64
    assert rel_err(layer(rotate(x, layer.tau, R), species), inv) < 1e-12
    assert torch.equal(inv, invariants(b))


def test_the_top_degree_is_a_homogeneous_polynomial_of_degree_k():
    """With the weights of degrees < K set to zero, B(t F) = t^K B(F): the layer multiplies K copies."""
    torch.manual_seed(0)
    K = 3
    layer = SymPowerReadout(channels=2, maxl=2, correlation=K, num_species=1).double()
    with torch.no_grad():
        for w in layer.contraction.weights[:-1]:
            w.zero_()
    x, species = random_features(4, 2, 2, seed=3), torch.zeros(4, dtype=torch.long)
    b = layer.contract(x, species).packed()
    assert float(b.detach().abs().max()) > 1e-6
    assert rel_err(layer.contract(0.7 * x, species).packed(), 0.7 ** K * b) < 1e-12
    with torch.no_grad():                         # per-element weights: element 0's weights only
        layer.contraction.weights[-1].mul_(2.0)
    assert rel_err(layer.contract(x, species).packed(), 2.0 * b) < 1e-12


def test_cormorant_with_sym_power_is_invariant_and_its_forces_equivariant():
    torch.manual_seed(0)
    plain = Cormorant("md17", num_cg_levels=2, num_channels=3, maxl=2, max_sh=2)
    torch.manual_seed(0)
    model = Cormorant("md17", num_cg_levels=2, num_channels=3, maxl=2, max_sh=2, sym_power=3,
                      sym_power_levels=2).double()
    assert len(model.sym_powers) == 2 and len(plain.sym_powers) == 0
    assert model.readout.net[0].in_features == plain.readout.net[0].in_features + 2 * model.sym_powers[0].num_out
    pos, species, batch = molecules([6, 5], seed=1)
    energy, forces = model.energy_and_forces(pos, species, batch)
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    energy_rot, forces_rot = model.energy_and_forces(pos @ R.T + 0.3, species, batch)
    assert rel_err(energy_rot, energy) < 1e-10
    assert rel_err(forces_rot, forces @ R.T) < 1e-10
    # the read-out depends on the symmetric power: changing its weights changes the energy
    with torch.no_grad():
        model.sym_powers[1].contraction.weights[-1].mul_(3.0)
    assert rel_err(model(pos, species, batch), energy) > 1e-6


def test_sym_power_settings_are_checked():
    with pytest.raises(ValueError, match="sym_power_levels"):
        Cormorant("md17", num_cg_levels=2, sym_power=2, sym_power_levels=3)
    with pytest.raises(ValueError, match="sym_power >= 0"):
        Cormorant("md17", sym_power=-1)


def test_sym_power_model_trains_and_reloads(tmp_path):
    model = {"num_cg_levels": 1, "num_channels": 2, "maxl": 1, "max_sh": 1, "readout_hidden": (8,), "sym_power": 2}
    cfg = TrainConfig(n_train=8, n_valid=4, n_test=4, epochs=2, batch_size=4, run_dir=str(tmp_path / "run"),
                      progress=False, model=model)
    trainer = Trainer(cfg, log=lambda *_: None)
    result = trainer.fit()
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    loaded = Potential.load(os.path.join(cfg.run_dir, "best_model.pt"))
    assert loaded.model.config.sym_power == 2 and len(loaded.model.sym_powers) == 1
    assert result["test"]["force_mae"] > 0
