"""The ``so3net`` command end to end: ``train`` on a tiny TOML config writes its run folder,
``evaluate`` and ``predict`` work on the result (extended XYZ in ASE's eV units), and bad settings
are reported by name with exit status 2."""
import csv
import json
import os

import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from so3net.cli import main
from so3net.data import energy_factor, load
from so3net.train import Potential
from so3net.wigner import random_rotation

TOML = """\
n_train = 12
n_valid = 4
n_test = 6
epochs = 2
batch_size = 4
seed = 3
[model]
num_cg_levels = 1
num_channels = 2
maxl = 1
max_sh = 1
readout_hidden = [8]
"""
KCAL_TO_EV = energy_factor("kcal/mol", "eV")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "tiny.toml"
    config.write_text(TOML)
    run_dir = str(folder / "run")
    assert main(["train", "--config", str(config), "--run-dir", run_dir, "--no-progress"]) == 0
    return folder, run_dir


def _write_xyz(path, dataset, with_labels, rotations=None):
    frames = []
    for i, mol in enumerate(dataset):
        pos = mol.positions if rotations is None else mol.positions @ rotations[i].T
        atoms = ase.Atoms(numbers=mol.species, positions=pos)
        if with_labels:   # the shipped data is in kcal/mol; ASE's extended XYZ in eV
            atoms.calc = SinglePointCalculator(atoms, energy=mol.energy * KCAL_TO_EV,
                                               forces=np.asarray(mol.forces) * KCAL_TO_EV)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def test_train_writes_the_run_folder(run, capsys):
    _, run_dir = run
    for name in ("metrics.csv", "learning_curve.png", "checkpoint.pt", "best_model.pt", "metrics.json"):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    with open(os.path.join(run_dir, "learning_curve.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(run_dir, "metrics.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("train_loss", "valid_energy_mae", "valid_force_mae"))
    with open(os.path.join(run_dir, "metrics.json")) as fh:
        test = json.load(fh)["test"]
    assert test["n_molecules"] == 6
    assert (test["energy_unit"], test["force_unit"]) == ("kcal/mol", "kcal/mol/Angstrom")
    for key in ("energy_mae", "energy_rmse", "force_mae", "force_rmse"):
        assert np.isfinite(test[key]) and test[key] > 0
    assert test["energy_mae"] <= test["energy_rmse"] and test["force_mae"] <= test["force_rmse"]


def test_evaluate_reproduces_the_test_metrics_from_xyz_in_ev(run, capsys):
    folder, run_dir = run
    test_set = load("ethanol_gfn2xtb").split(12, 4, 6, seed=3).test
    path = str(folder / "test_set.xyz")
    _write_xyz(path, test_set, with_labels=True)
    capsys.readouterr()
    assert main(["evaluate", os.path.join(run_dir, "best_model.pt"), path]) == 0
    printed = json.loads(capsys.readouterr().out)
    with open(os.path.join(run_dir, "metrics.json")) as fh:
        expected = json.load(fh)["test"]
    assert printed["energy_unit"] == "kcal/mol"       # reported in the model's units, converted from eV
    for key in ("energy_mae", "energy_rmse", "force_mae", "force_rmse"):
        assert printed[key] == pytest.approx(expected[key], rel=1e-4), key


def test_predict_is_invariant_and_equivariant(run, capsys):
    folder, run_dir = run
    data = load("ethanol_gfn2xtb")[[5, 5, 7]]
    rotations = random_rotation(3, generator=torch.Generator().manual_seed(0)).numpy()
    rotations[0] = np.eye(3)
    xyz, out = str(folder / "structures.xyz"), str(folder / "predicted.json")
    _write_xyz(xyz, data, with_labels=False, rotations=rotations)
    assert main(["predict", os.path.join(run_dir, "best_model.pt"), xyz, "--output", out]) == 0
    with open(out) as fh:
        pred = json.load(fh)
    assert (pred["energy_unit"], pred["force_unit"]) == ("kcal/mol", "kcal/mol/Angstrom")
    energies, forces = np.array(pred["energies"]), [np.array(f) for f in pred["forces"]]
    assert [f.shape for f in forces] == [(9, 3)] * 3
    potential = Potential.load(os.path.join(run_dir, "best_model.pt"))
    pos = torch.as_tensor(np.array(data.positions), dtype=torch.float32)
    species = torch.as_tensor(np.array(data.species))
    direct, _ = potential.energy_and_forces(pos, species, torch.arange(3).repeat_interleave(9))
    np.testing.assert_allclose(energies, direct.detach().numpy(), rtol=1e-9, atol=1e-6)
    assert energies[1] == pytest.approx(energies[0], abs=1e-3)        # rotated copy: same energy
    np.testing.assert_allclose(forces[1], forces[0] @ rotations[1].T, atol=1e-3)
    assert abs(energies[2] - energies[0]) > 1e-3                       # another geometry differs
    assert main(["predict", os.path.join(run_dir, "best_model.pt"), xyz]) == 0
    assert capsys.readouterr().out.count("structure ") == 3


@pytest.mark.parametrize("extra, toml, words", [
    ([], "n_trian = 12\n", ["unknown settings", "'n_trian'"]),
    ([], "lr = 'fast'\n", ["'lr'", "float"]),
    (["--model", "num_chanels=2"], "", ["unknown Cormorant options", "num_chanels"]),
    (["--model", "num_channels"], "", ["KEY=VALUE"]),
    (["--resume"], "", ["no checkpoint"]),
    (["--data", "missing.npz"], "", ["missing.npz"]),
])
def test_bad_settings_exit_2_with_a_message(tmp_path, capsys, extra, toml, words):
    config = tmp_path / "c.toml"
    config.write_text(toml + TOML)
    argv = ["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress", *extra]
    try:
        status = main(argv)
    except SystemExit as stop:   # argparse-level problems exit with their message
        status, message = 2, str(stop)
    else:
        message = capsys.readouterr().err
    assert status == 2
    for word in words:
        assert word in message, message
