"""Generate the data files shipped in ``so3net/data/``.

Two subcommands, both deterministic:

``md`` -- the default training set ``so3net/data/ethanol_gfn2xtb.npz``: Langevin molecular
dynamics of ethanol at 500 K with GFN2-xTB energies and forces (``tblite``'s ASE calculator),
subsampled every ``--stride`` steps after ``--equilibration`` steps. Stored in the sGDML/MD17
``.npz`` layout: ``R`` (M, 9, 3) float32 Å, ``E`` (M, 1) float64 kcal/mol, ``F`` (M, 9, 3) float32
kcal/mol/Å, ``z`` (9,) uint8, plus ``e_unit``, ``r_unit``, ``theory``, ``time_fs`` (frames are in
trajectory order) and the generating command. Exact command used for the shipped file::

    OMP_NUM_THREADS=1 python3 scripts/make_dataset.py md --seed 0 --n-samples 2000 --stride 20 \\
        --equilibration 2000 --temperature 500 --timestep 0.5 --out so3net/data/ethanol_gfn2xtb.npz

(about 3-6 minutes on a 2-core CPU; needs ``pip install tblite``.) ``--molecule NAME`` runs another
molecule of ASE's g2 collection (default ``CH3CH2OH``, ethanol); the two molecules of the sGDML
comparison (``scripts/compare_sgdml.py``, issue 16) are made with::

    OMP_NUM_THREADS=1 python3 scripts/make_dataset.py md --molecule CH3CHO --seed 0 --n-samples 1500 \
        --stride 20 --equilibration 2000 --temperature 500 --timestep 0.5 --out runs/data/acetaldehyde_gfn2xtb.npz
    OMP_NUM_THREADS=1 python3 scripts/make_dataset.py md --molecule H3CNH2 --seed 0 --n-samples 1500 \
        --stride 20 --equilibration 2000 --temperature 500 --timestep 0.5 --out runs/data/methylamine_gfn2xtb.npz

``qm9-exclusions`` -- ``so3net/data/qm9_uncharacterized.npz``: the 3,054 QM9 (GDB9) indices that
failed the geometry consistency check of Ramakrishnan et al. 2014 (their ``uncharacterized.txt``).
Generated as the complement, in 1..133885, of the molecule indices present in the ``qm9pack``
wheel (which holds exactly the 130,831 characterised molecules)::

    python3 scripts/make_dataset.py qm9-exclusions --out so3net/data/qm9_uncharacterized.npz
"""
import argparse
import os
import shlex
import sys
import time

import numpy as np

N_GDB9 = 133885
N_UNCHARACTERIZED = 3054
NAMES = {"CH3CH2OH": "ethanol", "CH3CHO": "acetaldehyde", "H3CNH2": "methylamine"}


def run_md(seed, n_samples, stride, equilibration, temperature, timestep_fs, friction_per_fs, name="CH3CH2OH"):
    """Langevin MD of the g2 molecule ``name`` (default ethanol) with GFN2-xTB; returns
    (z, R Å, E eV, F eV/Å, time fs, versions)."""
    from importlib.metadata import version

    from ase import units
    from ase.build import molecule
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
    from tblite.ase import TBLite

    atoms = molecule(name)  # ethanol's atom order is C C O H H H H H H, as in MD17 ethanol
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    atoms.set_constraint(FixCom())  # the MD keeps the centre of mass; stored forces are unconstrained
    dyn = Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature,
                   friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    start = time.time()
    dyn.run(equilibration)
    frames = []
    for i in range(n_samples):
        dyn.run(stride)
        frames.append((atoms.get_positions(), atoms.get_potential_energy(),
                       atoms.get_forces(apply_constraint=False)))
        if (i + 1) % 200 == 0:
            print(f"{i + 1}/{n_samples} frames, {time.time() - start:.0f} s", flush=True)
    R, E, F = (np.array(x) for x in zip(*frames))
    t = timestep_fs * (equilibration + stride * np.arange(1, n_samples + 1))
    return atoms.numbers.copy(), R, E, F, t, f"tblite {version('tblite')}, ase {version('ase')}"


def write_md(args):
    """Run the MD and write the sGDML-layout file (energies in kcal/mol, forces in kcal/mol/Å)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from so3net.data.units import energy_factor

    z, R, E, F, t, tb_version = run_md(args.seed, args.n_samples, args.stride, args.equilibration,
                                       args.temperature, args.timestep, args.friction, args.molecule)
    to_kcal = energy_factor("eV", "kcal/mol")
    np.savez_compressed(
        args.out, R=R.astype(np.float32), E=(E * to_kcal).reshape(-1, 1), F=(F * to_kcal).astype(np.float32),
        z=z.astype(np.uint8), time_fs=t, name=NAMES.get(args.molecule, args.molecule) + "_gfn2xtb",
        e_unit="kcal/mol", r_unit="Angstrom",
        theory=f"GFN2-xTB ({tb_version}), Langevin {args.temperature} K, "
               f"dt {args.timestep} fs, friction {args.friction}/fs, stride {args.stride}",
        command="python3 scripts/make_dataset.py " + shlex.join(sys.argv[1:]))
    print(f"wrote {args.out}: {len(E)} frames, {os.path.getsize(args.out)} bytes")


def qm9pack_indices():
    """Sorted GDB9 indices of the molecules in the installed ``qm9pack`` wheel's CSV files."""
    import csv
    import importlib.util

    spec = importlib.util.find_spec("qm9pack")
    if spec is None:
        raise SystemExit("qm9pack is not installed: pip install qm9pack")
    folder = os.path.join(spec.submodule_search_locations[0], "data")
    indices = []
    for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
        with open(os.path.join(folder, part), newline="") as f:
            reader = csv.reader(f)
            column = next(reader).index("Index")
            indices.extend(int(row[column]) for row in reader)
    return np.sort(np.array(indices, dtype=np.int64))


def write_qm9_exclusions(args):
    """Write the uncharacterised QM9 indices as the complement of qm9pack's indices."""
    present = qm9pack_indices()
    excluded = np.setdiff1d(np.arange(1, N_GDB9 + 1), present)
    if len(excluded) != N_UNCHARACTERIZED or len(present) != N_GDB9 - N_UNCHARACTERIZED:
        raise SystemExit(f"expected {N_UNCHARACTERIZED} excluded of {N_GDB9}, got {len(excluded)} "
                         f"excluded and {len(present)} present")
    np.savez_compressed(args.out, index=excluded.astype(np.int32),
                        source="complement in 1..133885 of the Index column of qm9pack 1.0.3 "
                               "(130,831 characterised molecules); agrees with uncharacterized.txt of "
                               "Ramakrishnan et al. 2014 (figshare file 3195404) in count and in "
                               "the entries spot-checked (first 45, 100 around 56220-60630, last 17)")
    print(f"wrote {args.out}: {len(excluded)} indices, first {excluded[:5].tolist()}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    md = sub.add_parser("md", help="GFN2-xTB MD dataset (ethanol by default)")
    md.add_argument("--molecule", default="CH3CH2OH", help="name in ASE's g2 collection (ase.build.molecule)")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--n-samples", type=int, default=2000)
    md.add_argument("--stride", type=int, default=20, help="MD steps between stored frames")
    md.add_argument("--equilibration", type=int, default=2000, help="MD steps discarded first")
    md.add_argument("--temperature", type=float, default=500.0, help="Kelvin")
    md.add_argument("--timestep", type=float, default=0.5, help="fs")
    md.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    md.add_argument("--out", default="so3net/data/ethanol_gfn2xtb.npz")
    md.set_defaults(run=write_md)
    ex = sub.add_parser("qm9-exclusions", help="QM9 uncharacterised-molecule index list")
    ex.add_argument("--out", default="so3net/data/qm9_uncharacterized.npz")
    ex.set_defaults(run=write_qm9_exclusions)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
