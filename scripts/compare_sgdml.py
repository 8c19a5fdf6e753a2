"""so3net against sGDML on GFN2-xTB molecular dynamics of molecules other than ethanol (issue 16).

For each molecule: the data set made by ``scripts/make_dataset.py md --molecule ...`` (1 500 frames,
see that script's docstring for the exact commands), split by
``numpy.random.default_rng(0).permutation(1500)``: the first 1 000 frames train, the last 500 test.
Both models see the same 1 000 training frames; the test frames are used once, at the end.

- **sGDML** (PyPI ``sgdml`` 1.0.3, energies and forces, symmetries on, the closed-form (analytic)
  solver; the script checks that the analytic solver was used). The kernel width σ is chosen on
  the training split only: each σ of ``--sigmas`` is fitted on the first 800 training frames and
  scored by the force MAE on the other 200; the best σ is refitted on all 1 000.
- **so3net**: ``so3net train --config configs/ethanol_ccsd_t_controls.toml`` (the ethanol recipe with its
  training controls) with ``--data`` this molecule, ``--n-train 1000 --n-valid 0 --n-test 500
  --seed 0`` and ``--time-limit`` seconds of training on one thread.

    python3 scripts/compare_sgdml.py                       # both models, both molecules
    python3 scripts/compare_sgdml.py --only sgdml          # one side; the table uses what exists
    python3 scripts/compare_sgdml.py --time-limit 1200 --molecules acetaldehyde

Results: ``runs/compare_sgdml/<molecule>/`` (sgdml.json, so3net run folder) and the table
``docs/results/sgdml_comparison.md`` (+ ``.json``), which names the so3net training time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOLECULES = {"acetaldehyde": "CH3CHO", "methylamine": "H3CNH2"}
N_FRAMES, N_TRAIN, N_TEST, N_SIGMA_FIT = 1500, 1000, 500, 800


def data_path(name: str) -> str:
    return os.path.join(ROOT, "runs", "data", f"{name}_gfn2xtb.npz")


def load_npz(name: str) -> dict:
    path = data_path(name)
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing; make it with: OMP_NUM_THREADS=1 python3 scripts/make_dataset.py md "
                         f"--molecule {MOLECULES[name]} --seed 0 --n-samples 1500 --stride 20 --equilibration 2000 "
                         f"--temperature 500 --timestep 0.5 --out {os.path.relpath(path, ROOT)}")
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    if len(data["E"]) != N_FRAMES:
        raise SystemExit(f"{path}: expected {N_FRAMES} frames, found {len(data['E'])}")
    return data


def split_indices() -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(0).permutation(N_FRAMES)
    return perm[:N_TRAIN], perm[N_TRAIN:N_TRAIN + N_TEST]


def sgdml_dataset(data: dict, index: np.ndarray, name: str) -> dict:
    return {"type": "d", "name": np.array(name), "theory": np.array(str(data["theory"])),
            "R": data["R"][index].astype(np.float64), "E": data["E"][index].reshape(-1).astype(np.float64),
            "F": data["F"][index].astype(np.float64), "z": data["z"].astype(int),
            "r_unit": np.array("Ang"), "e_unit": np.array("kcal/mol")}


def sgdml_fit(train: dict, other: dict, sigma: float) -> dict:
    """An sGDML model on all frames of ``train`` with the analytic solver (checked). sGDML's task
    also draws a few validation frames, which this script does not use; they come from ``other``
    (frames of the training split that differ from ``train``), so that no training frame is withheld."""
    from sgdml.train import GDMLTrain

    gdml = GDMLTrain(max_memory=14, max_processes=1)
    n = len(train["E"])
    task = gdml.create_task(train, n, other, 1, sig=sigma, use_sym=True, use_E=True, use_E_cstr=False)
    if sorted(task["idxs_train"].tolist()) != list(range(n)):
        raise RuntimeError("sGDML did not take every training frame")
    model = gdml.train(task)
    if str(model["solver_name"]) != "analytic":
        raise RuntimeError(f"sGDML used the {model['solver_name']} solver, not the closed-form one")
    return model


def sgdml_errors(model: dict, test: dict) -> dict:
    from sgdml.predict import GDMLPredict

    predictor = GDMLPredict(model, max_processes=1)
    E, F = predictor.predict(test["R"].reshape(len(test["R"]), -1))
    return {"energy_mae": float(np.abs(E - test["E"]).mean()),
            "force_mae": float(np.abs(F.reshape(test["F"].shape) - test["F"]).mean())}


def run_sgdml(name: str, sigmas: list[float], out: str) -> dict:
    data = load_npz(name)
    train_idx, test_idx = split_indices()
    fit_idx, hold_idx = train_idx[:N_SIGMA_FIT], train_idx[N_SIGMA_FIT:]       # training split only
    scores, start = {}, time.time()
    fit, hold = sgdml_dataset(data, fit_idx, f"{name}-fit"), sgdml_dataset(data, hold_idx, f"{name}-hold")
    for sigma in sigmas:
        model = sgdml_fit(fit, hold, sigma)
        scores[sigma] = sgdml_errors(model, hold)["force_mae"]
        print(f"{name}: sGDML sigma {sigma}: hold-out force MAE {scores[sigma]:.4f} kcal/mol/A", flush=True)
    best = min(scores, key=scores.get)
    if best in (min(sigmas), max(sigmas)):
        print(f"{name}: warning: the best sigma {best} is at the edge of the grid {sigmas}", flush=True)
    model = sgdml_fit(sgdml_dataset(data, train_idx, f"{name}-train"), hold, best)
    test = sgdml_errors(model, sgdml_dataset(data, test_idx, f"{name}-test"))
    result = {"model": "sGDML 1.0.3 (analytic solver, symmetries)", "sigma": best, "sigma_scores": scores,
              "sigma_selection": f"fit on {N_SIGMA_FIT} training frames, force MAE on the other {N_TRAIN - N_SIGMA_FIT}",
              "seconds": time.time() - start, "test": test}
    with open(os.path.join(out, "sgdml.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"{name}: sGDML test MAE {test['energy_mae']:.4f} kcal/mol, {test['force_mae']:.4f} kcal/mol/A", flush=True)
    return result


def run_so3net(name: str, time_limit: float, out: str, extra: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "so3net.cli", "train", "--config", "configs/ethanol_ccsd_t_controls.toml",
               "--data", data_path(name), "--n-train", str(N_TRAIN), "--n-valid", "0", "--n-test", str(N_TEST),
               "--seed", "0", "--time-limit", str(time_limit), "--run-dir", os.path.join(out, "so3net"),
               "--no-progress", *extra]
    print(" ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def write_table(names: list[str], base: str) -> None:
    rows, lines = {}, ["| molecule (GFN2-xTB, 500 K) | so3net energy MAE | so3net force MAE | sGDML energy MAE | "
                       "sGDML force MAE | so3net training | sGDML σ |", "|---|---|---|---|---|---|---|"]
    for name in names:
        folder = os.path.join(base, name)
        row = {}
        for key, path in (("so3net", os.path.join(folder, "so3net", "metrics.json")),
                          ("sgdml", os.path.join(folder, "sgdml.json"))):
            if os.path.exists(path):
                with open(path) as fh:
                    row[key] = json.load(fh)
        rows[name] = row
        s, g = row.get("so3net"), row.get("sgdml")
        cell = lambda r, k: f"{r['test'][k]:.3f}" if r else "not run"  # noqa: E731
        train_time = "not run"
        if s:
            with open(os.path.join(folder, "so3net", "metrics.csv")) as fh:
                last = fh.readlines()[-1].split(",")
            train_time = f"{float(last[3]) / 60:.0f} min, {s['epochs']} epochs"
        lines.append(f"| {name} | {cell(s, 'energy_mae')} | {cell(s, 'force_mae')} | {cell(g, 'energy_mae')} | "
                     f"{cell(g, 'force_mae')} | {train_time} | {g['sigma'] if g else '-'} |")
    os.makedirs(os.path.join(ROOT, "docs", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "results", "sgdml_comparison.json"), "w") as fh:
        json.dump(rows, fh, indent=2)
    with open(os.path.join(ROOT, "docs", "results", "sgdml_comparison.md"), "w") as fh:
        fh.write("Test MAE on 500 frames (kcal/mol, kcal/mol/Å); 1 000 training frames; split "
                 "default_rng(0).permutation(1500). Made by scripts/compare_sgdml.py.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES), choices=list(MOLECULES))
    parser.add_argument("--only", choices=["sgdml", "so3net", "table"], help="run one part (default: all)")
    parser.add_argument("--sigmas", nargs="+", type=float, default=[3, 5, 7, 10, 14],
                        help="sGDML kernel widths to choose from (on the training split)")
    parser.add_argument("--time-limit", type=float, default=2400.0, help="seconds of so3net training per molecule")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "compare_sgdml"))
    args, extra = parser.parse_known_args(argv)     # anything else goes to so3net train
    for name in args.molecules:
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        if args.only in (None, "sgdml"):
            run_sgdml(name, args.sigmas, folder)
        if args.only in (None, "so3net"):
            run_so3net(name, args.time_limit, folder, extra)
    write_table(args.molecules, args.out)


if __name__ == "__main__":
    main()
