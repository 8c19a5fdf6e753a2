"""Extended XYZ (and plain XYZ) reader, parsed by ``ase.io`` after a structural check.

ASE's conventions apply: positions in Å, energies in eV, forces in eV/Å, unless the caller names
other units. The energy is taken from the comment-line key ``energy_key`` and the forces from the
per-atom property ``forces_key`` (ASE moves the standard ``energy`` / ``forces`` into a
single-point calculator; both places are looked at). Frames with and without energies cannot be
mixed; a file with neither gives a dataset with ``energies=None`` (structures to predict on).

Before ASE parses the file, every frame is checked line by line (atom count, column count from
the ``Properties=`` key, numbers), so a malformed file is reported by line, and nothing is
returned from a file that is partly readable.
"""
import re

import numpy as np

from .dataset import MolecularDataset
from .errors import DataFormatError

_PROPERTIES = re.compile(r"(?:^|\s)Properties=(\S+)", re.IGNORECASE)
_PLAIN = ("S", "R", "R", "R")


def _column_types(path, line_number, comment):
    """Type letter per atom-line column from the ``Properties=`` key (plain XYZ: S R R R ...)."""
    match = _PROPERTIES.search(comment)
    if match is None:
        return None
    fields = match.group(1).strip("\"'").split(":")
    if len(fields) % 3 or not all(c.isdigit() for c in fields[2::3]):
        raise DataFormatError(path, f"line {line_number}", f"malformed Properties={match.group(1)}; "
                              "expected name:type:count triples such as species:S:1:pos:R:3")
    return [kind.upper() for kind, count in zip(fields[1::3], fields[2::3]) for _ in range(int(count))]


def _check_atom_line(path, line_number, line, types, symbols):
    tokens = line.split()
    expected = types or _PLAIN
    if len(tokens) < len(expected) or (types is not None and len(tokens) != len(types)):
        raise DataFormatError(path, f"line {line_number}", f"expected {len(expected)} columns on an atom "
                              f"line, got {len(tokens)}: {line.strip()!r} (does the frame's atom count "
                              "match its atom lines?)")
    if not (tokens[0] in symbols or tokens[0].isdigit()):
        raise DataFormatError(path, f"line {line_number}", f"unknown element {tokens[0]!r}")
    for column, (kind, token) in enumerate(zip(expected, tokens)):
        if kind in "RI":
            try:
                float(token) if kind == "R" else int(token)
            except ValueError:
                raise DataFormatError(path, f"line {line_number}", f"column {column + 1} should be "
                                      f"{'a real number' if kind == 'R' else 'an integer'}, "
                                      f"got {token!r}") from None


def scan_xyz(path, lines):
    """Check the frame structure; returns ``[(first line number, n_atoms), ...]`` (1-based)."""
    from ase.data import chemical_symbols

    symbols = set(chemical_symbols[1:])
    frames, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            if any(line.strip() for line in lines[i:]):
                raise DataFormatError(path, f"line {i + 1}", "blank line where a frame's atom count was expected")
            break
        try:
            n = int(lines[i].strip())
        except ValueError:
            raise DataFormatError(path, f"line {i + 1}", f"expected the atom count of frame {len(frames)}, "
                                  f"got {lines[i].strip()!r} (does the previous frame's atom count "
                                  "match its atom lines?)") from None
        if n < 1:
            raise DataFormatError(path, f"line {i + 1}", f"frame {len(frames)} declares {n} atoms")
        if i + 2 + n > len(lines):
            raise DataFormatError(path, f"line {i + 1}", f"truncated: frame {len(frames)} declares {n} atoms, "
                                  f"the file ends after {max(len(lines) - i - 2, 0)} atom lines")
        types = _column_types(path, i + 2, lines[i + 1])
        for j in range(i + 2, i + 2 + n):
            _check_atom_line(path, j + 1, lines[j], types, symbols)
        frames.append((i + 1, n))
        i += n + 2
    if not frames:
        raise DataFormatError(path, None, "no frames: the file is empty")
    return frames


def _lookup(atoms, key, per_atom):
    table = atoms.arrays if per_atom else atoms.info
    if key in table:
        return table[key]
    results = atoms.calc.results if atoms.calc is not None else {}
    return results.get(key)


def _collect(path, frames, lines_of_frames, key, per_atom):
    """Per-frame energies or forces; all present, or all absent (None)."""
    values = [_lookup(atoms, key, per_atom) for atoms in frames]
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        k = present.index(False)
        raise DataFormatError(path, f"frame {k} (line {lines_of_frames[k]})",
                              f"no {key!r} here although other frames have it")
    try:
        return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in values])
    except (TypeError, ValueError) as err:
        raise DataFormatError(path, None, f"{key!r} values are not numbers: {err}") from None


def read_extxyz(path, energy_key="energy", forces_key="forces", energy_unit="eV", length_unit="Angstrom"):
    """Read every frame of an (extended) XYZ file into a :class:`MolecularDataset`."""
    import ase.io

    with open(path) as f:
        lines = f.read().splitlines()
    starts = [first for first, _ in scan_xyz(path, lines)]
    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as err:  # ASE raises many types; re-raised with the file named
        raise DataFormatError(path, None, f"ase.io could not parse it ({type(err).__name__}: {err})") from None
    for k, atoms in enumerate(frames):
        if atoms.pbc.any():
            raise DataFormatError(path, f"frame {k} (line {starts[k]})",
                                  "periodic structures are not supported; molecules only")
    energies = _collect(path, frames, starts, energy_key, per_atom=False)
    forces = _collect(path, frames, starts, forces_key, per_atom=True)
    if energies is not None and len(energies) != len(frames):
        raise DataFormatError(path, None, f"{energy_key!r} must be one number per frame")
    try:
        return MolecularDataset(np.concatenate([a.positions for a in frames]),
                                np.concatenate([a.numbers for a in frames]), [len(a) for a in frames],
                                energies, forces, units={"energy": energy_unit, "length": length_unit})
    except ValueError as err:
        raise DataFormatError(path, None, str(err)) from None
