#!/usr/bin/env bash
# The ethanol acceptance run (issue 7; the targets printed are issue 16's, 0.055 kcal/mol and
# 0.25 kcal/mol/A): Cormorant on the sGDML ethanol CCSD(T) set (1000 configurations,
# 800 train / 200 test by numpy.random.default_rng(0).permutation(1000)), energy + force loss,
# 60 minutes of training (configs/ethanol_ccsd_t.toml), then the test MAEs against the targets
# and sGDML, and 1000 steps of NVE molecular dynamics with the trained model through ASE.
#
#   scripts/ethanol_benchmark.sh                      # the documented 60-minute run
#   scripts/ethanol_benchmark.sh --time-limit 120     # a 2-minute check (any `so3net train` flag)
#   NPROC=2 scripts/ethanol_benchmark.sh              # data parallel over 2 processes (torchrun)
#
# Environment: DATA (default ../shared/data/ethanol_ccsd_t-train.npz, relative to the repository
# root), CONFIG (default configs/ethanol_ccsd_t.toml; configs/ethanol_ccsd_t_controls.toml adds
# EMA and a second stage), RUN_DIR (default runs/ethanol_ccsd_t), NPROC (default 1), OMP_NUM_THREADS (default 1:
# on a shared 2-core machine a second intra-op thread makes the small tensor ops of this model
# many times slower; use NPROC=2 to occupy both cores of an idle machine).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
DATA="${DATA:-../shared/data/ethanol_ccsd_t-train.npz}"
RUN_DIR="${RUN_DIR:-runs/ethanol_ccsd_t}"
CONFIG="${CONFIG:-configs/ethanol_ccsd_t.toml}"
NPROC="${NPROC:-1}"

if [ ! -f "$DATA" ]; then
    echo "ethanol_benchmark: no data at $DATA (set DATA=path/to/ethanol_ccsd_t-train.npz)" >&2
    exit 2
fi
if [ "$NPROC" -gt 1 ]; then
    launch=(python3 -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m so3net.cli)
else
    launch=(python3 -m so3net.cli)
fi
"${launch[@]}" train --config "$CONFIG" --data "$DATA" --run-dir "$RUN_DIR" "$@"

python3 - "$RUN_DIR" "$DATA" <<'PY'
import json, sys

import ase
import numpy as np
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from so3net.calculator import Calculator
from so3net.data import load

run_dir = sys.argv[1]
with open(f"{run_dir}/metrics.json") as fh:
    result = json.load(fh)
test = result["test"]
print(f"\n{run_dir}: {result['epochs']} epochs, {test['n_molecules']} test molecules")
print(f"{'':14s}{'so3net':>10s}{'target':>10s}{'sGDML':>10s}{'MACE':>10s}   (targets: issue 16)")
for key, target, sgdml, mace, unit in (("energy_mae", 0.055, 0.060, 0.056, test["energy_unit"]),
                                        ("force_mae", 0.25, 0.39, 0.26, test["force_unit"])):
    verdict = "ok" if test[key] <= target else "not reached"
    print(f"{key:14s}{test[key]:10.4f}{target:10.3f}{sgdml:10.3f}{mace:10.3f}  {unit}  {verdict}")
print(f"energy RMSE {test['energy_rmse']:.4f}, force RMSE {test['force_rmse']:.4f}; "
      f"learning curve: {run_dir}/learning_curve.png, per epoch: {run_dir}/metrics.csv")

mol = load(sys.argv[2])[0]          # a CCSD(T) ethanol geometry from the data
atoms = ase.Atoms(numbers=mol.species, positions=mol.positions)
atoms.calc = Calculator(f"{run_dir}/best_model.pt")
MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
Stationary(atoms)
ZeroRotation(atoms)
total, kinetic = [], []
md = VelocityVerlet(atoms, timestep=0.5 * units.fs)
md.attach(lambda: (total.append(atoms.get_total_energy()), kinetic.append(atoms.get_kinetic_energy())))
md.run(1000)
total, kinetic = np.array(total), np.array(kinetic)
print(f"NVE 1000 x 0.5 fs at 300 K: energy drift {total[-1] - total[0]:.2e} eV, std E_total {total.std():.2e} eV, "
      f"std E_kin {kinetic.std():.2e} eV")
PY
