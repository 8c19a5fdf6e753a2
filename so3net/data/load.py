"""``load(path_or_name)``: pick the reader from the name, the extension and the content."""
import os
import tarfile
import zipfile

import numpy as np

from .errors import DataFormatError
from .npz import read_md17, read_rmd17
from .qm9 import read_qm9_xyz, read_qm9pack
from .xyz import read_extxyz

#: datasets shipped inside the package, by name
SHIPPED = {"ethanol_gfn2xtb": "ethanol_gfn2xtb.npz"}
#: the dataset ``so3net train`` uses when given none
DEFAULT_DATASET = "ethanol_gfn2xtb"
FORMATS = ("MD17/sGDML .npz (R, E, F, z)", "revised MD17 .npz (nuclear_charges, coords, energies, forces)",
           "extended XYZ (.xyz, .extxyz)", "QM9 dsgdb9nsd .xyz files (a file, folder or .tar.bz2)",
           "'qm9' (from the qm9pack package)", f"shipped: {', '.join(SHIPPED)}")


def shipped_path(name=DEFAULT_DATASET):
    """Path of a dataset file shipped in ``so3net/data/``."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped dataset {name!r}; shipped: {sorted(SHIPPED)}")
    return os.path.join(os.path.dirname(__file__), SHIPPED[name])


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataFormatError(path, None, f"not a readable .npz archive ({type(err).__name__}: {err})") from None
    if {"R", "E", "z"} <= keys:
        return read_md17(path)
    if {"nuclear_charges", "coords", "energies"} <= keys:
        return read_rmd17(path)
    raise DataFormatError(path, None, f"unrecognised .npz keys {sorted(keys)}; expected MD17 keys "
                          "R, E, F, z or revised-MD17 keys nuclear_charges, coords, energies, forces")


def _is_gdb9_xyz(path):
    with open(path) as f:
        f.readline()
        return f.readline().startswith("gdb ")


def load(source, **options):
    """Read a dataset; ``source`` is a shipped name, ``"qm9"``, or a path. ``options`` go to the
    reader (e.g. ``target="U0"`` for QM9, ``energy_unit="kcal/mol"`` for extended XYZ).
    Content that :class:`MolecularDataset` refuses (e.g. coincident atoms) raises a
    :class:`DataFormatError` naming the file.

    Supported: {formats}.
    """
    source = os.fspath(source)
    try:
        return _load(source, options)
    except ValueError as err:
        if isinstance(err, DataFormatError) or not str(err).startswith("MolecularDataset: "):
            raise
        raise DataFormatError(source, None, str(err).removeprefix("MolecularDataset: ")) from None


def _load(source, options):
    fixed_layout = source in SHIPPED or source.lower().endswith(".npz")
    if fixed_layout and options:
        raise TypeError(f"the .npz readers take no options, got {sorted(options)}")
    if source in SHIPPED:
        return read_md17(shipped_path(source))
    if source in ("qm9", "qm9pack"):
        return read_qm9pack(**options)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source}: no such file or folder, and not a dataset name "
                                f"(names: {sorted(SHIPPED) + ['qm9']})")
    extension = os.path.splitext(source)[1].lower()
    if extension == ".npz":
        return _read_npz(source)
    if extension in (".xyz", ".extxyz"):
        return read_qm9_xyz(source, **options) if _is_gdb9_xyz(source) else read_extxyz(source, **options)
    if os.path.isdir(source) or tarfile.is_tarfile(source):
        return read_qm9_xyz(source, **options)
    raise DataFormatError(source, None, f"unrecognised format {extension or '(no extension)'!r}; "
                          f"supported: {'; '.join(FORMATS)}")


load.__doc__ = load.__doc__.format(formats="; ".join(FORMATS))
