"""Metrics of a potential on a dataset, and the run's records: metrics CSV, JSON and learning curve."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import torch

from ..data import iterate_batches

__all__ = ["evaluate", "append_csv", "write_csv", "write_json", "plot_learning_curve", "TensorBoardLog"]


def evaluate(potential, dataset, batch_size: int = 32, forces: bool = True) -> dict:
    """MAE and RMSE of energies (and forces, when the data has them) in the data's units."""
    model = potential.model
    was_training = model.training
    model.eval()
    e_err, f_err = [], []
    dtype, device = potential.dtype, potential.reference.device
    for b in iterate_batches(dataset, batch_size, shuffle=False, dtype=torch.float64, device=device):
        pos = b.positions.to(dtype)
        if forces and b.forces is not None:
            energies, pred_f = potential.energy_and_forces(pos, b.species, b.batch, create_graph=False)
            f_err.append((pred_f.detach().double() - b.forces).flatten().cpu().numpy())
        else:
            with torch.no_grad():
                energies = potential.model(pos, b.species, b.batch).double() + \
                    potential.reference_energy(b.species, b.batch, b.n_molecules)
        e_err.append((energies.detach() - b.energies).cpu().numpy())
    model.train(was_training)
    units = dataset.units
    out = {"n_molecules": len(dataset), "energy_unit": units["energy"],
           "force_unit": f"{units['energy']}/{units['length']}"}
    e = np.concatenate(e_err) if e_err else np.zeros(0)
    out.update(energy_mae=float(np.abs(e).mean()) if e.size else float("nan"),
               energy_rmse=float(np.sqrt((e ** 2).mean())) if e.size else float("nan"))
    if f_err:
        f = np.concatenate(f_err)
        out.update(force_mae=float(np.abs(f).mean()), force_rmse=float(np.sqrt((f ** 2).mean())))
    return out


def append_csv(path: str, row: dict) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def write_csv(path: str, rows: list[dict]) -> None:
    """Replace ``path`` by ``rows`` (columns of the first row); used when a run resumes."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, path)


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def plot_learning_curve(history: list[dict], path: str, units: dict) -> None:
    """Training loss and validation MAEs against epochs, log scale, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    curves = []
    for key, label in (("valid_energy_mae", f"energy MAE ({units['energy']})"),
                       ("valid_force_mae", f"force MAE ({units['energy']}/{units['length']})")):
        values = [h.get(key) for h in history]
        if any(v is not None and np.isfinite(v) for v in values):
            curves.append((values, label))
    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(9 if curves else 5, 3.5), squeeze=False)
    axes = axes[0]
    axes[0].plot(epochs, [h["train_loss"] for h in history], label="train loss")
    axes[0].set(xlabel="epoch", ylabel="normalised loss", yscale="log")
    if curves:                           # no validation set (n_valid = 0): the training loss alone
        for values, label in curves:
            axes[1].plot(epochs, values, label=label)
        axes[1].set(xlabel="epoch", ylabel="validation MAE", yscale="log")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.1 if curves else 0.16, right=0.98, bottom=0.14, top=0.95, wspace=0.32)
    fig.savefig(path, dpi=100)
    plt.close(fig)


class TensorBoardLog:
    """Each epoch's row (the columns of metrics.csv) as TensorBoard scalars, step = epoch, in
    ``folder``. Needs the optional ``tensorboard`` package (``pip install 'so3net[tensorboard]'``)."""

    def __init__(self, folder: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ValueError(f"tensorboard = true needs the tensorboard package ({err}); install it with "
                             "pip install 'so3net[tensorboard]' (or pip install tensorboard), or set "
                             "tensorboard = false") from None
        self.writer = SummaryWriter(folder)

    def write(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and np.isfinite(value):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
