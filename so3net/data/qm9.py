"""QM9 readers: the original ``dsgdb9nsd`` XYZ distribution and the ``qm9pack`` CSV wheel.

QM9 (Ramakrishnan et al., Sci. Data 1, 140022, 2014) has 133,885 molecules (GDB9 indices
1..133885) at B3LYP/6-31G(2df,p); 3,054 of them failed the authors' geometry consistency check
(their ``uncharacterized.txt``) and are excluded by default, leaving 130,831. The excluded indices
ship in ``qm9_uncharacterized.npz`` (see ``scripts/make_dataset.py qm9-exclusions``).

Energies are in Hartree, lengths in Å, molecules in ascending GDB9 index (``dataset.ids``).
For the targets U0, U, H and G the published B3LYP atomic reference energies
(:data:`ATOM_REFERENCE`, the authors' ``atomref.txt``) are subtracted, giving atomisation
energies; ``atomref=False`` keeps the totals.

The original file ``dsgdb9nsd_NNNNNN.xyz`` holds: the atom count n; ``gdb <index>`` and 15
properties (A B C mu alpha homo lumo gap r2 zpve U0 U H G Cv); n lines ``element x y z charge``
(numbers may use Mathematica's ``*^`` exponent); harmonic frequencies; SMILES; InChI.
"""
import csv
import importlib.util
import os
import re
import tarfile

import numpy as np

from .dataset import MolecularDataset
from .errors import DataFormatError

N_GDB9 = 133885
PROPERTIES = ("A", "B", "C", "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv")
#: targets in Hartree that can be used as energies
ENERGY_TARGETS = ("U0", "U", "H", "G", "homo", "lumo", "gap", "zpve")
#: B3LYP/6-31G(2df,p) atomic reference energies in Hartree (atomref.txt, figshare file 3195395)
ATOM_REFERENCE = {
    "U0": {1: -0.500273, 6: -37.846772, 7: -54.583861, 8: -75.064579, 9: -99.718730},
    "U": {1: -0.498857, 6: -37.845355, 7: -54.582445, 8: -75.063163, 9: -99.717314},
    "H": {1: -0.497912, 6: -37.844411, 7: -54.581501, 8: -75.062219, 9: -99.716370},
    "G": {1: -0.510927, 6: -37.861317, 7: -54.598897, 8: -75.079532, 9: -99.733544},
}
SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_FILE_NAME = re.compile(r"dsgdb9nsd_(\d+)\.xyz$")
_QM9PACK_COLUMNS = {"U0": "InternalEnergy_0K_au", "U": "InternalEnergy_298K_au", "H": "Enthalphy_298K_au",
                    "G": "GibbsFreeEnergy_298K_au", "homo": "HOMO_au", "lumo": "LUMO_au",
                    "gap": "HOMO_LUMO_gap_au", "zpve": "ZPVE_au"}


def uncharacterized_indices():
    """The 3,054 GDB9 indices (1-based) excluded from QM9, as shipped with so3net."""
    with np.load(os.path.join(os.path.dirname(__file__), "qm9_uncharacterized.npz")) as f:
        return f["index"].astype(np.int64)


def _exclusions(exclude):
    """``"default"`` -> shipped list; None -> nothing; a path -> first integer of each line; else array."""
    if exclude is None:
        return set()
    if isinstance(exclude, str) and exclude == "default":
        return set(uncharacterized_indices().tolist())
    if isinstance(exclude, (str, os.PathLike)):
        with open(exclude) as f:
            return {int(line.split()[0]) for line in f if line.split() and line.split()[0].isdigit()}
    return {int(i) for i in exclude}


def _check_target(target):
    if target not in ENERGY_TARGETS:
        raise ValueError(f"QM9 target {target!r} is not an energy in Hartree; expected one of {ENERGY_TARGETS}")


def _float(path, line_number, token):
    try:
        value = float(token.replace("*^", "e"))
    except ValueError:
        raise DataFormatError(path, f"line {line_number}", f"bad number {token!r}") from None
    if not np.isfinite(value):
        raise DataFormatError(path, f"line {line_number}", f"number {token!r} is not finite")
    return value


def parse_gdb9_xyz(path, text):
    """One ``dsgdb9nsd`` file -> (index, species (n,), positions (n, 3), properties dict)."""
    lines = text.strip("\n").split("\n")
    try:
        n = int(lines[0].strip())
    except ValueError:
        raise DataFormatError(path, "line 1", f"expected the number of atoms, got {lines[0].strip()!r}") from None
    if n < 1 or len(lines) != n + 5:
        raise DataFormatError(path, None, f"{n} atoms need {n + 5} lines (count, properties, atoms, "
                              f"frequencies, SMILES, InChI), the file has {len(lines)}: truncated, or a "
                              "wrong atom count")
    head = lines[1].split()
    if len(head) != 17 or head[0] != "gdb" or not head[1].isdigit():
        raise DataFormatError(path, "line 2", f"expected 'gdb <index>' and 15 properties, got {len(head)} fields")
    props = dict(zip(PROPERTIES, (_float(path, 2, t) for t in head[2:])))
    species, positions = np.empty(n, np.int64), np.empty((n, 3))
    for a, line in enumerate(lines[2:2 + n]):
        tokens = line.split()
        if len(tokens) != 5:
            raise DataFormatError(path, f"line {a + 3}", f"expected 'element x y z charge', got {line.strip()!r}")
        if tokens[0] not in SYMBOLS:
            raise DataFormatError(path, f"line {a + 3}", f"unknown element {tokens[0]!r}; QM9 has H C N O F")
        species[a] = SYMBOLS[tokens[0]]
        positions[a] = [_float(path, a + 3, t) for t in tokens[1:4]]
    n_freq = len(lines[n + 2].split())
    if n_freq not in (3 * n - 6, 3 * n - 5) and n > 1:
        raise DataFormatError(path, f"line {n + 3}", f"expected {3 * n - 6} (or {3 * n - 5}) harmonic "
                              f"frequencies for {n} atoms, got {n_freq}: is the atom count right?")
    return int(head[1]), species, positions, props


def _gdb9_files(source):
    """Yield (index, display path, reader) for every dsgdb9nsd file in a directory, tar or single file."""
    if os.path.isdir(source):
        for name in os.listdir(source):
            match = _FILE_NAME.search(name)
            if match:
                full = os.path.join(source, name)
                yield int(match.group(1)), full, (lambda full=full: open(full).read())
    elif tarfile.is_tarfile(source):
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                match = _FILE_NAME.search(member.name)
                if match and member.isfile():
                    text = archive.extractfile(member).read().decode()
                    yield int(match.group(1)), f"{source}:{member.name}", (lambda text=text: text)
    else:
        yield -1, str(source), (lambda: open(source).read())


def _atomization(species, counts, energies, target, atomref):
    if not atomref or target not in ATOM_REFERENCE:
        return energies
    table = np.zeros(119)
    for z, value in ATOM_REFERENCE[target].items():
        table[z] = value
    molecule = np.repeat(np.arange(len(counts)), counts)
    return energies - np.bincount(molecule, weights=table[species], minlength=len(counts))


def _pack(records, target, atomref, name):
    """Sort (index, species, positions, energy) records by index and build the dataset."""
    records.sort(key=lambda r: r[0])
    ids = [r[0] for r in records]
    species = np.concatenate([r[1] for r in records]) if records else np.zeros(0, np.int64)
    counts = np.array([len(r[1]) for r in records], dtype=np.int64)
    energies = _atomization(species, counts, np.array([r[3] for r in records], float), target, atomref)
    positions = np.concatenate([r[2] for r in records]) if records else np.zeros((0, 3))
    return MolecularDataset(positions, species, counts, energies, None, ids=ids, name=name,
                            units={"energy": "Hartree", "length": "Angstrom"})


def read_qm9_xyz(source, target="U0", atomref=True, exclude="default"):
    """Read QM9 from the original distribution: a folder of ``dsgdb9nsd_*.xyz``, the
    ``dsgdb9nsd.xyz.tar.bz2`` archive, or one such file. ``exclude``: "default" (the shipped 3,054
    uncharacterised indices), None, a path to a list (first integer per line, like
    ``uncharacterized.txt``) or an iterable of GDB9 indices."""
    _check_target(target)
    excluded = _exclusions(exclude)
    records, seen = [], set()
    for index, path, read in _gdb9_files(source):
        if index in excluded:
            continue
        gdb, species, positions, props = parse_gdb9_xyz(path, read())
        if index >= 0 and gdb != index:
            raise DataFormatError(path, "line 2", f"index {gdb} does not match the file name's {index}")
        if gdb in excluded:
            continue
        if gdb in seen:
            raise DataFormatError(path, "line 2", f"molecule {gdb} appears twice")
        seen.add(gdb)
        records.append((gdb, species, positions, props[target]))
    if not records:
        raise DataFormatError(source, None, "no dsgdb9nsd_*.xyz molecules found (after exclusions)")
    return _pack(records, target, atomref, "qm9")


def qm9pack_folder():
    """The ``data/`` folder of the installed ``qm9pack`` wheel (found without importing it: the
    package's ``__init__`` imports ``pkg_resources``, which recent setuptools no longer has)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("reading QM9 from qm9pack needs the package: pip install qm9pack "
                          "(about 100 MB; 130,831 molecules as CSV), or pass the dsgdb9nsd files instead")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def _qm9pack_row(path, line, row, column):
    """(index, species, positions, energy) from one CSV row of qm9pack."""
    try:
        index, n = int(row[column["Index"]]), int(row[column["N_atoms"]])
        symbols = [s.strip().strip("'\"") for s in row[column["Elements"]].strip("[]").split(",")]
        coords = row[column["XYZ_Ang"]].replace("[", "").replace("]", "").split(",")
        positions = np.array([float(c) for c in coords]).reshape(-1, 3)
        energy = float(row[column["target"]])
    except (ValueError, IndexError) as err:
        raise DataFormatError(path, f"line {line}", f"malformed record ({err})") from None
    if len(symbols) != n or len(positions) != n:
        raise DataFormatError(path, f"line {line}", f"N_atoms is {n} but there are {len(symbols)} "
                              f"elements and {len(positions)} positions")
    if any(s not in SYMBOLS for s in symbols):
        raise DataFormatError(path, f"line {line}", f"unknown element in {symbols}; QM9 has H C N O F")
    if not (np.isfinite(positions).all() and np.isfinite(energy)):
        raise DataFormatError(path, f"line {line}", "positions or energy not finite")
    return index, np.array([SYMBOLS[s] for s in symbols]), positions, energy


def read_qm9pack(target="U0", atomref=True, exclude="default", folder=None):
    """Read QM9 from the ``qm9pack`` wheel's CSV files ``qm9_part{1,2,3}.csv`` (130,831 molecules,
    the uncharacterised ones already absent). ``folder`` overrides the installed package's."""
    _check_target(target)
    folder = qm9pack_folder() if folder is None else folder
    excluded = _exclusions(exclude)
    records = []
    csv.field_size_limit(1 << 24)
    for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
        path = os.path.join(folder, part)
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            wanted = ("Index", "N_atoms", "Elements", "XYZ_Ang", _QM9PACK_COLUMNS[target])
            missing = [c for c in wanted if c not in header]
            if missing:
                raise DataFormatError(path, "line 1", f"missing columns {missing}; header is {header}")
            column = {c: header.index(c) for c in wanted} | {"target": header.index(wanted[-1])}
            for row in reader:
                record = _qm9pack_row(path, reader.line_num, row, column)
                if record[0] not in excluded:
                    records.append(record)
    return _pack(records, target, atomref, "qm9")
