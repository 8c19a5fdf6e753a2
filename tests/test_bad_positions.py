"""Atom positions that no potential can take: coincident atoms (the radial basis has r^-p, so two
atoms at one place made training NaN with exit status 0) and NaN or infinite coordinates. The data
readers and the model's forward both refuse them, naming the molecule (frame) and the atoms."""
import numpy as np
import pytest
import torch

import so3net.data as D
from so3net.cli import main
from so3net.data import DataFormatError
from so3net.models import Cormorant

UNITS = {"energy": "kcal/mol", "length": "Angstrom"}


def ethanol_frames(m=8):
    data = np.load(D.shipped_path())
    return {"R": data["R"][:m], "E": data["E"][:m], "F": data["F"][:m], "z": data["z"]}


def test_dataset_refuses_coincident_atoms_naming_molecule_and_atoms():
    frames = ethanol_frames()
    R = frames["R"].astype(np.float64)
    R[5, 7] = R[5, 2]                                       # frame 5: atom 7 on top of atom 2
    with pytest.raises(ValueError, match=r"molecule 5 \(id 5\): atoms 2 and 7 are 0 apart"):
        D.MolecularDataset(R.reshape(-1, 3), np.tile(frames["z"], 8), np.full(8, 9), frames["E"][:, 0],
                           units=UNITS)


def test_reading_a_file_with_coincident_atoms_names_the_file_and_frame(tmp_path):
    frames = ethanol_frames()
    frames["R"][3, 4] = frames["R"][3, 1] + 1e-5
    path = tmp_path / "touching.npz"
    np.savez(path, **frames)
    with pytest.raises(DataFormatError, match=r"touching.npz: molecule 3 \(id 3\): atoms 1 and 4 are 1.7e-05 apart"):
        D.load(path)


def test_train_on_coincident_atoms_exits_2_and_writes_nothing(tmp_path, capsys):
    frames = ethanol_frames(40)
    frames["R"][30, 0] = frames["R"][30, 8]
    path = tmp_path / "bad.npz"
    np.savez(path, **frames)
    run_dir = tmp_path / "run"
    code = main(["train", "--data", str(path), "--n-train", "20", "--n-valid", "4", "--n-test", "4",
                 "--epochs", "1", "--run-dir", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.npz" in err and "molecule 30" in err and "atoms 0 and 8" in err
    assert not run_dir.exists()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Cormorant("md17", num_cg_levels=1, num_channels=2, maxl=1, max_sh=1).double()


def two_molecules():
    pos = torch.tensor(ethanol_frames(2)["R"], dtype=torch.float64).reshape(-1, 3)
    species = torch.tensor(ethanol_frames(2)["z"], dtype=torch.long).repeat(2)
    return pos, species, torch.arange(2).repeat_interleave(9)


@pytest.mark.parametrize("call", ["forward", "energy_and_forces"])
def test_model_refuses_coincident_atoms(model, call):
    pos, species, batch = two_molecules()
    assert torch.isfinite(getattr(model, call)(pos, species, batch)[0]).all()
    pos[9 + 6] = pos[9 + 3]                                 # molecule 1, atoms 3 and 6
    with pytest.raises(ValueError, match=r"molecule 1: atoms 3 and 6 \(rows 12 and 15 of positions\) are 0 apart"):
        getattr(model, call)(pos, species, batch)


def test_model_names_coincident_atoms_in_the_order_given_when_it_groups_atoms(model, monkeypatch):
    """With the atoms renumbered into neighbour-count buckets (Neighbours.grouped) the error still
    names the atoms and rows of the positions as given."""
    from so3net.kernels.message import Neighbours
    buckets = Neighbours.buckets
    monkeypatch.setattr(Neighbours, "buckets", lambda self, k: buckets(self, k, min_saving=0.0, min_slots=1))
    pos, species, batch = two_molecules()
    pos = torch.cat([pos[:9], pos[9:13]])            # molecule 1 cut to 4 atoms: fewer neighbours, own bucket
    species, batch = species[:13], batch[:13]
    order, lists = model.neighbours(pos, batch).grouped(model.neighbour_buckets)
    assert order is not None and not torch.equal(order, torch.arange(13))
    pos[12] = pos[10]                                       # molecule 1, atoms 1 and 3
    with pytest.raises(ValueError, match=r"molecule 1: atoms 1 and 3 \(rows 10 and 12 of positions\) are 0 apart"):
        model(pos, species, batch)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_model_refuses_non_finite_positions(model, bad):
    pos, species, batch = two_molecules()
    pos[11, 2] = bad
    with pytest.raises(ValueError, match=r"molecule 1: atom 2 \(row 11 of positions\) has a non-finite position"):
        model(pos, species, batch)


def test_model_and_readers_share_one_threshold():
    from so3net.nn.positions import MIN_DISTANCE
    assert MIN_DISTANCE == D.COINCIDENT
