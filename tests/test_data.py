"""so3net.data: readers on small files written here (good and broken), units, splits,
neighbour lists, batching, and the shipped dataset."""
import csv
import importlib
import importlib.util
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import so3net.data as D
from so3net.data import DataFormatError

SHARED_ETHANOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ethanol_ccsd_t-train.npz"
FEW = settings(max_examples=15, deadline=None)


def toy_dataset(n_mol=7, seed=0, forces=True):
    rng = np.random.default_rng(seed)
    mols = []
    for i in range(n_mol):
        n = int(rng.integers(1, 6))
        mols.append(D.Molecule(rng.normal(size=(n, 3)), rng.integers(1, 10, n), float(rng.normal()),
                               rng.normal(size=(n, 3)) if forces else None, 100 + i))
    return D.MolecularDataset.from_molecules(mols, units={"energy": "eV", "length": "Angstrom"}, name="toy")


# ---------------------------------------------------------------- units and the dataset

def test_unit_factors_agree_with_ase():
    import ase.units as u
    assert D.energy_factor("Hartree", "eV") == pytest.approx(u.Hartree, rel=1e-7)
    assert D.energy_factor("kcal/mol", "eV") == pytest.approx(u.kcal / u.mol, rel=1e-7)
    assert D.length_factor("Bohr", "Angstrom") == pytest.approx(u.Bohr, rel=1e-7)
    with pytest.raises(ValueError, match="unknown energy unit 'furlong'"):
        D.energy_factor("furlong", "eV")


@FEW
@given(st.sampled_from(["eV", "kcal/mol", "Hartree", "meV"]), st.sampled_from(["Angstrom", "Bohr"]))
def test_convert_round_trip_and_force_units(energy, length):
    ds = toy_dataset()
    other = ds.convert(energy=energy, length=length)
    assert other.units == {"energy": energy, "length": length}
    fe, fl = D.energy_factor("eV", energy), D.length_factor("Angstrom", length)
    np.testing.assert_allclose(other.energies, ds.energies * fe, rtol=1e-12)
    np.testing.assert_allclose(other.forces, ds.forces * fe / fl, rtol=1e-12)
    back = other.convert(energy="eV", length="Angstrom")
    for a, b in ((back.positions, ds.positions), (back.energies, ds.energies), (back.forces, ds.forces)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_subset_and_molecules_agree():
    ds = toy_dataset()
    idx = [5, 0, 3, 3]
    sub = ds.subset(idx)
    assert list(sub.ids) == [ds.ids[i] for i in idx]
    for k, i in enumerate(idx):
        a, b = sub[k], ds[i]
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.species, b.species)
        np.testing.assert_array_equal(a.forces, b.forces)
        assert a.energy == b.energy
    assert len(ds.subset(np.zeros(len(ds), bool))) == 0
    assert not ds.positions.flags.writeable
    with pytest.raises(IndexError):
        ds.subset([len(ds)])


def test_dataset_rejects_inconsistent_or_non_finite_data():
    with pytest.raises(ValueError, match="counts add up to 4 atoms, positions has 3"):
        D.MolecularDataset(np.zeros((3, 3)), [1, 1, 1], [2, 2], units={"energy": "eV", "length": "Bohr"})
    with pytest.raises(ValueError, match="energies of molecule 1"):
        D.MolecularDataset(np.zeros((3, 3)), [1, 1, 1], [2, 1], [0.0, np.nan],
                           units={"energy": "eV", "length": "Bohr"})


# ---------------------------------------------------------------- splits

def test_split_is_seeded_disjoint_and_matches_the_issue_recipe():
    ds = toy_dataset(50)
    a, b = ds.split(30, 10, 5, seed=3), ds.split(30, 10, 5, seed=3)
    assert all(np.array_equal(x.ids, y.ids) for x, y in zip(a, b))
    assert not np.array_equal(ds.split(30, 10, 5, seed=4).train.ids, a.train.ids)
    ids = np.concatenate([s.ids for s in a])
    assert [len(s) for s in a] == [30, 10, 5] and len(set(ids)) == 45
    perm = np.random.default_rng(0).permutation(50)
    split = ds.split(40, 0, 10, seed=0)
    np.testing.assert_array_equal(split.train.ids, ds.ids[perm[:40]])
    np.testing.assert_array_equal(split.test.ids, ds.ids[perm[40:]])
    with pytest.raises(ValueError, match="add up to at most the 50"):
        ds.split(40, 10, 1)


def test_paper_splits():
    train, valid, test = D.qm9_split(130831, seed=0)
    assert (len(train), len(valid), len(test)) == (100000, 17748, 13083)
    perm = np.random.RandomState(0).permutation(130831)
    np.testing.assert_array_equal(np.concatenate([train, valid, test]), perm)
    swapped = D.qm9_split(130831, seed=0, cormorant_code_order=True)
    assert np.array_equal(swapped.test, valid) and np.array_equal(swapped.valid, test)
    train, valid, test = D.md17_split(80000, seed=0)
    assert (len(train), len(valid), len(test)) == (50000, 10000, 10000)
    assert len(np.unique(np.concatenate([train, valid, test]))) == 70000
    with pytest.raises(ValueError, match="70000"):
        D.md17_split(1000)


# ---------------------------------------------------------------- MD17 and revised MD17

def write_md17(path, m=6, n=4, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    arrays = dict(R=rng.normal(size=(m, n, 3)), E=rng.normal(size=(m, 1)), F=rng.normal(size=(m, n, 3)),
                  z=np.array([6, 8, 1, 1][:n], np.uint8))
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_md17_reader(tmp_path):
    arrays = write_md17(tmp_path / "a.npz")
    ds = D.load(tmp_path / "a.npz")
    assert ds.units == {"energy": "kcal/mol", "length": "Angstrom"} and len(ds) == 6
    np.testing.assert_array_equal(ds.positions, arrays["R"].reshape(-1, 3))
    np.testing.assert_array_equal(ds.energies, arrays["E"][:, 0])
    np.testing.assert_array_equal(ds.forces, arrays["F"].reshape(-1, 3))
    np.testing.assert_array_equal(ds[2].species, [6, 8, 1, 1])
    write_md17(tmp_path / "b.npz", E=np.arange(6.0), e_unit=np.array("eV"), r_unit=np.array("Bohr"))
    other = D.read_md17(tmp_path / "b.npz")
    assert other.units == {"energy": "eV", "length": "Bohr"} and other.energies[3] == 3.0


@pytest.mark.parametrize("overrides, match", [
    (dict(F=None, E=None), r"key 'E': missing energies"),
    (dict(F=np.zeros((6, 3, 3))), r"key 'F': forces must have shape \(6, 4, 3\), got \(6, 3, 3\)"),
    (dict(E=np.array([0, 1, 2, np.nan, 4, 5.0])), r"record 3: energies \('E'\) contains NaN"),
    (dict(z=np.array([6, 0, 1, 1])), r"atomic numbers must be integers 1..118"),
    (dict(e_unit=np.array("furlong")), r"energy unit: unknown energy unit 'furlong'"),
])
def test_md17_reader_errors(tmp_path, overrides, match):
    write_md17(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataFormatError, match=match) as err:
        D.read_md17(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(err.value)


def test_truncated_npz(tmp_path):
    write_md17(tmp_path / "a.npz", m=200)
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"cut.npz: not a readable .npz archive"):
        D.load(tmp_path / "cut.npz")


@pytest.mark.skipif(not SHARED_ETHANOL.exists(), reason="shared sGDML ethanol file not on this machine")
def test_reads_the_sgdml_ethanol_file():
    ds = D.load(SHARED_ETHANOL)
    assert len(ds) == 1000 and ds.force_unit == "kcal/mol/Angstrom"
    np.testing.assert_array_equal(ds[0].species, [6, 6, 8, 1, 1, 1, 1, 1, 1])
    train, _, test = ds.split(800, 0, 200, seed=0)
    np.testing.assert_array_equal(test.ids, np.random.default_rng(0).permutation(1000)[800:])


def test_rmd17_reader(tmp_path):
    rng = np.random.default_rng(1)
    coords, forces = rng.normal(size=(5, 3, 3)), rng.normal(size=(5, 3, 3))
    np.savez(tmp_path / "r.npz", nuclear_charges=np.array([8, 1, 1]), coords=coords,
             energies=rng.normal(size=5), forces=forces, old_indices=np.arange(5))
    ds = D.load(tmp_path / "r.npz")
    assert ds.units["energy"] == "kcal/mol" and len(ds) == 5
    np.testing.assert_array_equal(ds.forces, forces.reshape(-1, 3))
    np.savez(tmp_path / "s.npz", nuclear_charges=np.array([8, 1, 1]), coords=coords[:, :2], energies=np.zeros(5))
    with pytest.raises(DataFormatError, match=r"key 'coords': positions must have shape \(M, 3, 3\)"):
        D.read_rmd17(tmp_path / "s.npz")
    np.savez(tmp_path / "u.npz", positions=coords)
    with pytest.raises(DataFormatError, match="unrecognised .npz keys"):
        D.load(tmp_path / "u.npz")


# ---------------------------------------------------------------- extended XYZ

def write_extxyz(path, n_frames=3, seed=0):
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        atoms = ase.Atoms("COH" + "H" * k, positions=rng.normal(size=(3 + k, 3)))
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()), forces=rng.normal(size=(3 + k, 3)))
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return frames


def test_extxyz_reader(tmp_path):
    frames = write_extxyz(tmp_path / "a.extxyz")
    ds = D.load(tmp_path / "a.extxyz")
    assert ds.units == {"energy": "eV", "length": "Angstrom"} and list(ds.counts) == [3, 4, 5]
    for k, atoms in enumerate(frames):
        np.testing.assert_allclose(ds[k].positions, atoms.positions, atol=1e-7)
        np.testing.assert_allclose(ds[k].forces, atoms.get_forces(), atol=1e-7)
        assert ds[k].energy == pytest.approx(atoms.get_potential_energy())
    kcal = D.read_extxyz(tmp_path / "a.extxyz", energy_unit="kcal/mol")
    assert kcal.units["energy"] == "kcal/mol"
    (tmp_path / "plain.xyz").write_text("2\nno properties\nH 0 0 0\nH 0 0 0.74\n")
    plain = D.load(tmp_path / "plain.xyz")
    assert plain.energies is None and plain.forces is None and plain.n_atoms == 2


def _edit_line(path, line_number, new):
    lines = path.read_text().splitlines()
    lines[line_number - 1] = new
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("edit, match", [
    (lambda p: p.write_text("\n".join(p.read_text().splitlines()[:-2]) + "\n"),
     r"line 12: truncated: frame 2 declares 5 atoms, the file ends after 3 atom lines"),
    (lambda p: _edit_line(p, 1, "4"), r"line 6: expected 7 columns .* atom count"),
    (lambda p: _edit_line(p, 1, "2"), r"line 5: expected the atom count of frame 1"),
    (lambda p: _edit_line(p, 4, "O 0.1 0.2 0.3x 1 2 3"), r"line 4: column 4 should be a real number, got '0.3x'"),
    (lambda p: _edit_line(p, 3, "Qq 0 0 0 1 2 3"), r"line 3: unknown element 'Qq'"),
])
def test_extxyz_reader_errors(tmp_path, edit, match):
    path = tmp_path / "bad.extxyz"
    write_extxyz(path)
    edit(path)
    with pytest.raises(DataFormatError, match=match) as err:
        D.load(path)
    assert str(path) in str(err.value)


def test_extxyz_missing_energy_in_one_frame_and_periodic(tmp_path):
    path = tmp_path / "a.extxyz"
    write_extxyz(path)
    lines = path.read_text().splitlines()
    lines[6] = lines[6].replace("energy=", "note=")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"frame 1 \(line 6\): no 'energy' here"):
        D.load(path)
    (tmp_path / "p.extxyz").write_text('1\nLattice="5 0 0 0 5 0 0 0 5" pbc="T T T" energy=1.0\nH 0 0 0\n')
    with pytest.raises(DataFormatError, match="periodic structures are not supported"):
        D.load(tmp_path / "p.extxyz")


# ---------------------------------------------------------------- QM9, original files and qm9pack

GDB9_MOLECULES = [  # (index, symbols, positions Å, U0 Hartree); 1 and 2 are QM9's methane and ammonia
    (1, "CHHHH", [[-0.0126981359, 1.0858041578, 0.0080009958], [0.002150416, -0.0060313176, 0.0019761204],
                  [1.0117308433, 1.4637511618, 0.0002765748], [-0.540815069, 1.4475266138, -0.8766437152],
                  [-0.5238136345, 1.4379326443, 0.9063972942]], -40.47893),
    (2, "NHHH", [[-0.0404260543, 1.0241077531, 0.0625637998], [0.0172574639, 0.0125452063, -0.0273771593],
                 [0.9157893661, 1.3587451948, -0.0287577581], [-0.5202777357, 1.3435321258, -0.7755426124]],
     -56.525887),
    (58, "OHH", [[0.0, 0.0, 0.1], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]], -76.4),   # an uncharacterised index
    (7, "OHH", [[0.0, 0.0, 0.12], [0.0, 0.75, -0.48], [0.0, -0.75, -0.48]], -76.404702),
]


def gdb9_text(index, symbols, positions, u0):
    n = len(symbols)
    props = [157.7, 157.7, 157.7, 0.0, 13.2, -0.39, 0.12, 0.50, 35.4, 0.0447, u0, u0 + 0.003, u0 + 0.004,
             u0 - 0.02, 6.47]
    lines = [str(n), "gdb %d\t" % index + "\t".join(repr(p) for p in props)]
    for a, (s, xyz) in enumerate(zip(symbols, positions)):
        coords = [f"{x * 1e3:.10f}*^-3" if a == 0 and c == 0 else repr(x) for c, x in enumerate(xyz)]
        lines.append("\t".join([s, *coords, "0.1"]))
    lines += ["\t".join(["1000.0"] * (3 * n - 6)), "C\tC", "InChI=1S/X\tInChI=1S/X"]
    return "\n".join(lines) + "\n"


def write_gdb9(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for mol in GDB9_MOLECULES:
        (folder / f"dsgdb9nsd_{mol[0]:06d}.xyz").write_text(gdb9_text(*mol))
    return folder


def expected_atomization(symbols, u0):
    ref = D.ATOM_REFERENCE["U0"]
    return u0 - sum(ref[{"H": 1, "C": 6, "N": 7, "O": 8}[s]] for s in symbols)


def check_qm9(ds, kept=(1, 2, 7)):
    assert list(ds.ids) == list(kept) and ds.units == {"energy": "Hartree", "length": "Angstrom"}
    for k, index in enumerate(kept):
        _, symbols, positions, u0 = next(m for m in GDB9_MOLECULES if m[0] == index)
        np.testing.assert_allclose(ds[k].positions, positions, rtol=1e-12)
        assert ds[k].energy == pytest.approx(expected_atomization(symbols, u0), abs=1e-9)


def test_qm9_xyz_folder_tar_and_single_file(tmp_path):
    folder = write_gdb9(tmp_path / "gdb")
    check_qm9(D.load(folder))
    with tarfile.open(tmp_path / "dsgdb9nsd.xyz.tar.bz2", "w:bz2") as archive:
        for f in sorted(folder.iterdir()):
            archive.add(f, arcname=f.name)
    check_qm9(D.load(tmp_path / "dsgdb9nsd.xyz.tar.bz2"))
    check_qm9(D.load(folder / "dsgdb9nsd_000002.xyz"), kept=(2,))
    everything = D.read_qm9_xyz(folder, exclude=None, atomref=False)
    assert list(everything.ids) == [1, 2, 7, 58] and everything.energies[0] == pytest.approx(-40.47893)
    (tmp_path / "ex.txt").write_text("header\n  7  some smiles\n")
    assert list(D.read_qm9_xyz(folder, exclude=tmp_path / "ex.txt").ids) == [1, 2, 58]
    with pytest.raises(ValueError, match="not an energy"):
        D.read_qm9_xyz(folder, target="mu")


@pytest.mark.parametrize("edit, match", [
    (lambda t: "\n".join(t.splitlines()[:-2]), r"5 atoms need 10 lines .* the file has 8"),
    (lambda t: t.replace("5\n", "4\n", 1), r"4 atoms need 9 lines"),
    (lambda t: t.replace("0.002150416", "0.00215x", 1), r"line 4: bad number '0.00215x'"),
    (lambda t: t.replace("gdb 1\t157.7", "gdb 1\t", 1), r"line 2: expected 'gdb <index>' and 15 properties"),
    (lambda t: t.replace("gdb 1", "gdb 9", 1), r"line 2: index 9 does not match the file name's 1"),
])
def test_qm9_xyz_errors(tmp_path, edit, match):
    folder = write_gdb9(tmp_path / "gdb")
    path = folder / "dsgdb9nsd_000001.xyz"
    path.write_text(edit(path.read_text()))
    with pytest.raises(DataFormatError, match=match) as err:
        D.load(folder)
    assert "dsgdb9nsd_000001.xyz" in str(err.value)


QM9PACK_HEADER = ["XYZ_file", "Index", "SMILES", "InChi", "N_atoms", "Stoichiometry", "Elements", "XYZ_Ang",
                  "Mulliken_pop", "InternalEnergy_0K_au", "InternalEnergy_298K_au"]


def write_qm9pack(site, molecules, bad_row=False):
    package = site / "qm9pack"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('so3net must not import qm9pack')\n")
    parts = [molecules[:1], molecules[1:], []]
    for p, mols in enumerate(parts):
        with open(package / "data" / f"qm9_part{p + 1}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(QM9PACK_HEADER)
            for index, symbols, positions, u0 in mols:
                n = len(symbols) + (1 if bad_row and index == 2 else 0)
                writer.writerow([f"dsgdb9nsd_{index:06d}.xyz", index, "C", "InChI", n, "[]",
                                 "[" + ",".join(f"'{s}'" for s in symbols) + "]",
                                 "[" + ",".join("[" + ",".join(map(repr, xyz)) + "]" for xyz in positions) + "]",
                                 "[]", u0, u0 + 0.003])


@pytest.fixture
def fake_qm9pack(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "qm9pack", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return tmp_path / "site"


def test_qm9pack_reader_matches_the_xyz_reader(fake_qm9pack, tmp_path):
    characterised = [m for m in GDB9_MOLECULES if m[0] != 58]
    write_qm9pack(fake_qm9pack, characterised)
    from_pack = D.load("qm9")
    from_xyz = D.load(write_gdb9(tmp_path / "gdb"))
    np.testing.assert_array_equal(from_pack.ids, from_xyz.ids)
    np.testing.assert_allclose(from_pack.positions, from_xyz.positions, rtol=1e-12)
    np.testing.assert_allclose(from_pack.energies, from_xyz.energies, rtol=1e-12)


def test_qm9pack_errors(fake_qm9pack, monkeypatch):
    write_qm9pack(fake_qm9pack, GDB9_MOLECULES[:2], bad_row=True)
    with pytest.raises(DataFormatError, match=r"qm9_part2.csv, line 2: N_atoms is 5 but there are 4 elements"):
        D.read_qm9pack()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "qm9pack" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match="pip install qm9pack"):
        D.load("qm9")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_shipped_exclusions_are_the_molecules_missing_from_qm9pack(tmp_path):
    folder = os.path.join(importlib.util.find_spec("qm9pack").submodule_search_locations[0], "data")
    present, head = [], tmp_path / "head"
    head.mkdir()
    for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
        with open(os.path.join(folder, part), "rb") as f:
            first_lines = [next(f) for _ in range(30)]
            f.seek(0)                                   # rows start '"dsgdb9nsd_NNNNNN.xyz",'
            present.extend(int(line[11:17]) for line in f if line.startswith(b'"dsgdb9nsd_'))
        (head / part).write_bytes(b"".join(first_lines))
    excluded = D.uncharacterized_indices()
    assert len(excluded) == 3054 and len(present) == 130831
    np.testing.assert_array_equal(excluded, np.setdiff1d(np.arange(1, 133886), present))
    ds = D.read_qm9pack(folder=head)            # the real CSV layout, first rows of each part
    assert len(ds) == 87 and ds.ids[0] == 1
    assert ds[0].energy == pytest.approx(expected_atomization("CHHHH", -40.47893), abs=1e-9)


def test_load_dispatch_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a dataset name"):
        D.load(tmp_path / "nothing.npz")
    (tmp_path / "a.csv").write_text("x\n")
    with pytest.raises(DataFormatError, match=r"unrecognised format '.csv'"):
        D.load(tmp_path / "a.csv")
    with pytest.raises(TypeError, match="take no options"):
        D.load("ethanol_gfn2xtb", target="U0")


# ---------------------------------------------------------------- neighbour lists

def brute_force_edges(positions, batch, cutoff):
    d = torch.cdist(positions, positions)
    close = (d < cutoff) & (batch[:, None] == batch[None, :])
    close.fill_diagonal_(False)
    dst, src = torch.nonzero(close, as_tuple=True)   # row-major: sorted by (dst, src)
    return src, dst


@FEW
@given(st.lists(st.integers(1, 12), min_size=1, max_size=8), st.floats(0.3, 3.0),
       st.sampled_from(["pairs", "cells", "auto"]), st.booleans(), st.integers(0, 10**6))
def test_radius_graph_equals_brute_force(counts, cutoff, method, shuffle, seed):
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    if shuffle:
        batch = batch[torch.randperm(len(batch), generator=g)]
    positions = torch.randn(len(batch), 3, generator=g, dtype=torch.float64) * 1.5
    src, dst = D.radius_graph(positions, batch, cutoff, method=method)
    ref_src, ref_dst = brute_force_edges(positions, batch, cutoff)
    assert torch.equal(src, ref_src) and torch.equal(dst, ref_dst)
    assert torch.equal(batch[src], batch[dst]) and not (src == dst).any()


def test_radius_graph_pair_list_is_per_molecule_and_validates():
    from so3net.data.neighbors import _pairs_within_molecules
    counts = torch.tensor([3, 1, 5])
    src, _ = _pairs_within_molecules(counts, torch.cumsum(counts, 0) - counts)
    assert len(src) == int((counts * (counts - 1)).sum())        # sum n_i (n_i - 1), not N (N - 1)
    positions = torch.zeros(4, 3, requires_grad=True)
    src, dst = D.radius_graph(positions, torch.zeros(4, dtype=torch.long), 1.0)
    assert len(src) == 12 and not src.requires_grad
    empty = D.radius_graph(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 1.0)
    assert len(empty[0]) == 0
    with pytest.raises(ValueError, match=r"positions \(N, 3\) and batch \(N,\)"):
        D.radius_graph(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 1.0)


# ---------------------------------------------------------------- batching

def test_collate_packs_molecules_in_order():
    ds = toy_dataset()
    batch = D.collate(ds, dtype=torch.float64)
    assert batch.units == ds.units and batch.n_molecules == len(ds)
    np.testing.assert_array_equal(batch.positions.numpy(), ds.positions)
    np.testing.assert_array_equal(batch.batch.numpy(), np.repeat(np.arange(len(ds)), ds.counts))
    from_list = D.collate([ds[3], ds[1]])
    assert from_list.positions.dtype == torch.float32 and from_list.counts.tolist() == [ds.counts[3], ds.counts[1]]
    np.testing.assert_allclose(from_list.forces[: ds.counts[3]].numpy(), ds[3].forces, rtol=1e-6)


def test_iterate_batches_epochs_seeds_ranks_and_resume():
    ds = toy_dataset(23)
    epoch = list(D.iterate_batches(ds, 5, seed=1, epoch=0))
    assert [b.n_molecules for b in epoch] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat([b.ids for b in epoch]).tolist()) == sorted(ds.ids.tolist())
    again = list(D.iterate_batches(ds, 5, seed=1, epoch=0))
    assert all(torch.equal(a.ids, b.ids) for a, b in zip(epoch, again))
    assert not torch.equal(next(D.iterate_batches(ds, 5, seed=1, epoch=1)).ids, epoch[0].ids)
    assert len(list(D.iterate_batches(ds, 5, drop_last=True))) == 4
    ranks = [list(D.iterate_batches(ds, 5, seed=1, rank=r, world_size=2)) for r in range(2)]
    for k, whole in enumerate(epoch):
        joined = torch.cat([ranks[0][k].ids, ranks[1][k].ids])
        assert torch.equal(joined, whole.ids)
        assert torch.equal(torch.cat([ranks[0][k].positions, ranks[1][k].positions]), whole.positions)
    resumed = list(D.iterate_batches(ds, 5, seed=1, start=3))
    assert [b.ids.tolist() for b in resumed] == [b.ids.tolist() for b in epoch[3:]]


# ---------------------------------------------------------------- the shipped dataset

def test_shipped_dataset_is_small_and_physical():
    path = D.shipped_path()
    assert os.path.getsize(path) <= 1_000_000
    ds = D.load(D.DEFAULT_DATASET)
    assert len(ds) == 2000 and ds.units == {"energy": "kcal/mol", "length": "Angstrom"}
    np.testing.assert_array_equal(ds.species.reshape(len(ds), -1), np.tile([6, 6, 8, 1, 1, 1, 1, 1, 1], (2000, 1)))
    R, F, E = ds.positions.reshape(-1, 9, 3), ds.forces.reshape(-1, 9, 3), ds.energies
    assert np.isfinite(E).all() and np.isfinite(F).all()
    cc = np.linalg.norm(R[:, 0] - R[:, 1], axis=1)
    assert 1.3 < cc.min() and cc.max() < 1.9                               # C-C bond stays a bond
    assert np.abs(F.sum(1)).max() < 1e-3                                    # no net force
    torque = np.cross(R - R.mean(1, keepdims=True), F).sum(1)
    assert np.abs(torque).max() < 0.05                                      # no net torque
    kT = 0.0019872043 * 500                                                 # kcal/mol at 500 K
    assert 0.6 < E.std() / (np.sqrt(21 / 2) * kT) < 1.5                     # equipartition, 21 modes
    # frames are in trajectory order: E(t+1) - E(t) ~ -(trapezoid of F) . dR, so F = -dE/dR
    work = -0.5 * ((F[1:] + F[:-1]) * (R[1:] - R[:-1])).sum((1, 2))
    assert np.corrcoef(np.diff(E), work)[0, 1] > 0.9
