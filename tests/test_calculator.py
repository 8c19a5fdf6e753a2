"""The ASE calculator: eV and eV/Å from a model trained in kcal/mol, forces that are the gradient
of the energy, and 1 000 steps of NVE molecular dynamics on ethanol that conserve the energy.

The tiny model uses the md17 preset's linear read-out: a LeakyReLU hidden layer makes the energy
piecewise smooth, and its force jumps raise the drift about fifty-fold (measured: 8e-3 eV against
2e-6 eV over the same 1 000 steps).
"""
import ase
import numpy as np
import pytest
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from so3net.calculator import Calculator
from so3net.data import energy_factor, load
from so3net.train import Potential, TrainConfig, Trainer

TINY = {"num_cg_levels": 1, "num_channels": 2, "maxl": 1, "max_sh": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("calc") / "run"
    config = TrainConfig(n_train=16, n_valid=0, n_test=2, epochs=2, batch_size=4, run_dir=str(run_dir),
                         progress=False, model=dict(TINY))
    Trainer(config, log=lambda *_: None).fit()
    return str(run_dir / "best_model.pt")


@pytest.fixture
def ethanol():
    mol = load("ethanol_gfn2xtb")[0]
    return ase.Atoms(numbers=mol.species, positions=mol.positions)


def test_energy_in_ev_and_forces_are_its_gradient(trained, ethanol):
    potential = Potential.load(trained)
    pos = torch.as_tensor(ethanol.positions, dtype=torch.float32)
    species = torch.as_tensor(ethanol.numbers)
    energy, forces = potential.energy_and_forces(pos, species, torch.zeros(9, dtype=torch.long), create_graph=False)
    ethanol.calc = Calculator(trained)                     # from the saved file
    to_ev = energy_factor("kcal/mol", "eV")
    assert ethanol.get_potential_energy() == pytest.approx(float(energy.detach()[0]) * to_ev, rel=1e-12)
    np.testing.assert_allclose(ethanol.get_forces(), forces.detach().double().numpy() * to_ev, rtol=1e-6)

    potential.model.double()                               # float64 for clean finite differences
    calc, h = Calculator(potential), 1e-4
    ethanol.calc = calc
    analytic = ethanol.get_forces()
    numeric = np.zeros_like(analytic)
    for atom, axis in [(0, 0), (3, 1), (5, 2), (8, 0)]:
        shifted = []
        for sign in (1, -1):
            moved = ethanol.copy()
            moved.positions[atom, axis] += sign * h
            moved.calc = calc
            shifted.append(moved.get_potential_energy())
        numeric[atom, axis] = -(shifted[0] - shifted[1]) / (2 * h)
        assert numeric[atom, axis] == pytest.approx(analytic[atom, axis], rel=1e-5, abs=1e-8)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Use thermalize_momenta:DeprecationWarning")   # ase >= 3.29; we support 3.22
def test_nve_md_conserves_energy(trained, ethanol):
    ethanol.calc = Calculator(trained)
    MaxwellBoltzmannDistribution(ethanol, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(ethanol)
    ZeroRotation(ethanol)
    md = VelocityVerlet(ethanol, timestep=0.5 * units.fs)
    total, kinetic = [], []
    md.attach(lambda: (total.append(ethanol.get_total_energy()), kinetic.append(ethanol.get_kinetic_energy())))
    md.run(1000)
    total, kinetic = np.array(total), np.array(kinetic)
    time_ps = np.arange(len(total)) * 0.5e-3
    slope = np.polyfit(time_ps, total, 1)[0]
    drift = total[-1] - total[0]
    print(f"\nNVE ethanol, 1000 x 0.5 fs: energy drift {drift:.2e} eV (fit {slope * time_ps[-1]:.2e} eV, "
          f"{slope / 9 * 1e3:.2e} meV/atom/ps); std E_total {total.std():.2e} eV; "
          f"std E_kin {kinetic.std():.2e} eV; mean E_kin {kinetic.mean():.3f} eV")
    assert len(total) == 1001 and kinetic.std() > 1e-3           # atoms moved and exchanged energy
    assert abs(drift) < 0.01 * kinetic.std() and abs(slope * time_ps[-1]) < 0.01 * kinetic.std()
    assert total.std() < 0.05 * kinetic.std()
