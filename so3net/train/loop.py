"""The training loop: energy and force losses, AMSGrad with a cosine schedule, checkpoints each epoch,
``resume``, metrics CSV, learning curve, best model, and data-parallel training over
``torch.distributed`` (launched with ``torchrun``; gloo on CPU, NCCL on GPU).

Learning rate: cosine from ``lr`` to ``lr_min`` over the run's progress
``p = max(step / total_steps, elapsed / time_limit)``, so a time budget anneals fully instead of
cutting the schedule off at a high rate; training stops when ``p`` reaches 1 (mid-epoch if the
time runs out). Without a time limit the run is deterministic, and ``resume`` from the checkpoint
of the last finished epoch reproduces an uninterrupted run exactly.

Data parallelism: every global batch (``batch_size`` molecules) is cut into ``world_size``
contiguous parts (:func:`so3net.data.batch_indices`); each rank's loss is its share of the
single-process loss of the whole batch (sums divided by the global counts), and gradients are
summed over ranks with one ``all_reduce`` of the flattened ``.grad`` (a rank whose share of a
short last batch is empty contributes zeros); elapsed time is averaged over ranks so all stop
together. So after N steps all ranks hold the parameters that one
process would reach on the combined batches. Only rank 0 writes files.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

from ..data import batch_indices, iterate_batches, load
from ..models import Cormorant
from .checkpoint import check_resume_settings, check_writable, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .potential import Potential, fit_energy_reference
from .report import append_csv, evaluate, plot_learning_curve, write_csv, write_json

__all__ = ["Trainer", "train"]

CHECKPOINT = "checkpoint.pt"
BEST = "best_model.pt"
PLOT_EVERY = 60.0  # seconds between redraws of the learning curve during a run (and once at the end)


class Trainer:
    """Train a Cormorant potential as described by a :class:`TrainConfig`."""

    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1, log=print):
        self.cfg, self.rank, self.world_size, self.log = config, rank, world_size, log
        if config.batch_size < world_size:
            raise ValueError(f"batch_size {config.batch_size} is smaller than the {world_size} processes")
        torch.manual_seed(config.seed)
        data = load(config.data)
        self.split = data.split(config.n_train, config.n_valid, config.n_test, config.seed)
        train = self.split.train
        if train.energies is None:
            raise ValueError(f"{config.data}: training needs energies, the data has none")
        if config.force_weight > 0 and train.forces is None:
            raise ValueError(f"{config.data}: force_weight > 0 but the data has no forces; set force_weight = 0")
        self.dtype = getattr(torch, config.dtype)
        model = Cormorant(config.preset, **config.model).to(self.dtype).to(config.device)
        reference = fit_energy_reference(train, model.config.species)
        self.potential = Potential(model, reference, train.units).to(config.device)
        residual = train.energies - _composition_energy(train, model.config.species, reference)
        self.var_e = float(max(residual.var(), 1e-12))
        self.var_f = float(max(train.forces.var(), 1e-12)) if train.forces is not None else 1.0
        model.set_energy_reference(scale=math.sqrt(self.var_e))
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, amsgrad=True,
                                          weight_decay=config.weight_decay)
        self.steps_per_epoch = len(batch_indices(len(train), config.batch_size, shuffle=False))
        self.total_steps = self.steps_per_epoch * config.epochs
        self.epoch, self.steps, self.history, self.best = 0, 0, [], float("inf")
        self.elapsed_before, self.session_start, self.out_of_time = 0.0, time.time(), False
        self.plotted = time.time()

    # ------------------------------------------------------------- schedule
    def elapsed(self) -> float:
        """Seconds of training so far, over all sessions of this run (resumes included)."""
        return self.elapsed_before + time.time() - self.session_start

    def progress(self, elapsed: float) -> float:
        """Fraction of the budget used: the larger of steps and time (when there is a time limit)."""
        p = self.steps / max(self.total_steps, 1)
        if self.cfg.time_limit is not None:
            p = max(p, elapsed / self.cfg.time_limit)
        return p

    def learning_rate(self, progress: float) -> float:
        cfg = self.cfg
        return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    # ------------------------------------------------------------- persistence
    def path(self, name: str) -> str:
        return os.path.join(self.cfg.run_dir, name)

    def save(self) -> None:
        if self.rank != 0:
            return
        state = {"potential": self.potential.to_checkpoint(), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "steps": self.steps, "elapsed": self.elapsed(), "history": self.history,
                 "best": self.best, "config": self.cfg.to_dict(), "torch_rng": torch.get_rng_state()}
        save_checkpoint(state, self.path(CHECKPOINT))  # atomic: a kill or failure keeps the previous one

    def restore(self) -> None:
        path = self.path(CHECKPOINT)
        if not os.path.exists(path):
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        state = load_checkpoint(path, map_location=self.cfg.device)
        check_resume_settings(path, state["config"], self.cfg.to_dict())
        self.potential.model.load_state_dict(state["potential"]["model_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.steps, self.history, self.best = state["epoch"], state["steps"], state["history"], state["best"]
        self.elapsed_before, self.session_start = state["elapsed"], time.time()
        torch.set_rng_state(state["torch_rng"])
        if self.rank == 0:  # rows written after the checkpoint by the killed run are dropped
            write_csv(self.path("metrics.csv"), self.history)

    # ------------------------------------------------------------- one step
    def loss(self, b, counts: tuple[int, int]) -> torch.Tensor:
        """This rank's share of the normalised loss of the global batch (``counts`` = global
        molecules, global atoms)."""
        cfg, model = self.cfg, self.potential.model
        pos = b.positions.to(self.dtype)
        target_e = (b.energies - self.potential.reference_energy(b.species, b.batch, b.n_molecules)).to(self.dtype)
        if cfg.force_weight > 0:
            energies, forces = model.energy_and_forces(pos, b.species, b.batch, create_graph=True)
            f_term = ((forces - b.forces.to(self.dtype)) ** 2).sum() / (3 * counts[1] * self.var_f)
        else:
            energies, f_term = model(pos, b.species, b.batch), 0.0
        e_term = ((energies - target_e) ** 2).sum() / (counts[0] * self.var_e)
        return cfg.energy_weight * e_term + cfg.force_weight * f_term

    def step(self, b) -> float | None:
        """One optimiser step on this rank's share ``b`` of a global batch; the global batch's loss,
        or None (and no step) when the budget is used up."""
        shared = torch.tensor([b.n_molecules, b.positions.shape[0], self.elapsed() / self.world_size],
                              dtype=torch.float64)
        if self.world_size > 1:
            dist.all_reduce(shared)
        progress = self.progress(float(shared[2]))
        if progress >= 1.0:
            self.out_of_time = self.cfg.time_limit is not None
            return None
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(progress)
        params = list(self.potential.model.parameters())
        self.optimizer.zero_grad(set_to_none=False)
        if b.n_molecules:
            loss = self.loss(b, (int(shared[0]), int(shared[1])))
        else:  # an empty share of a short last batch: zero gradients, same collectives
            loss = sum((p * 0).sum() for p in params)
        loss.backward()
        value = loss.detach().reshape(1).to(torch.float64)
        if self.world_size > 1:
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads] + [value.to(grads[0].dtype)])
            dist.all_reduce(flat)
            for p, g in zip(params, torch.split(flat[:-1], [g.numel() for g in grads])):
                p.grad = g.view_as(p).clone()
            value = flat[-1:].double()
        self.optimizer.step()
        self.steps += 1
        return float(value)

    # ------------------------------------------------------------- epochs
    def run_epoch(self) -> float:
        cfg = self.cfg
        batches = iterate_batches(self.split.train, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=self.epoch,
                                  rank=self.rank, world_size=self.world_size, dtype=torch.float64,
                                  device=cfg.device)
        bar = _progress(batches, self.steps_per_epoch, f"epoch {self.epoch + 1}/{cfg.epochs}",
                        cfg.progress and self.rank == 0)
        total, done = 0.0, 0
        for b in bar:
            value = self.step(b)
            if value is None:
                break
            total, done = total + value, done + 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / done:.4g}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
        return total / done if done else float("nan")

    def fit(self, resume: bool = False) -> dict:
        """Train until ``epochs`` or ``time_limit``; return the test metrics of the best model."""
        cfg = self.cfg
        if self.rank == 0:
            check_writable(cfg.run_dir)   # fail now, not after the first epoch
        self.session_start = time.time()
        if resume:
            self.restore()
        while self.epoch < cfg.epochs and not self.out_of_time:
            train_loss = self.run_epoch()
            if self.out_of_time and math.isnan(train_loss):
                break
            self.epoch += 1
            row = {"epoch": self.epoch, "train_loss": train_loss, "lr": self.optimizer.param_groups[0]["lr"],
                   "seconds": self.elapsed()}
            if len(self.split.valid) and self.rank == 0:
                v = evaluate(self.potential, self.split.valid, forces=self.split.valid.forces is not None)
                row.update(valid_energy_mae=v["energy_mae"], valid_force_mae=v.get("force_mae", float("nan")))
                score = v["energy_mae"] / math.sqrt(self.var_e) + v.get("force_mae", 0.0) / math.sqrt(self.var_f)
            else:
                score = train_loss
            self.history.append(row)
            if self.rank == 0:
                self._record(row, score)
        if self.out_of_time and self.rank == 0:
            self.log(f"time limit of {cfg.time_limit:.0f} s reached after {self.steps} steps ({self.epoch} epochs)")
        return self.finish()

    def _record(self, row: dict, score: float) -> None:
        if score < self.best:
            self.best = score
            save_checkpoint(self.potential.to_checkpoint(), self.path(BEST))
        self.save()
        append_csv(self.path("metrics.csv"), row)
        if time.time() - self.plotted > PLOT_EVERY:  # drawing costs ~1 s: live plot, not every tiny epoch
            self.plot()
        summary = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",))
        self.log(f"epoch {row['epoch']}: {summary}")

    def plot(self) -> None:
        if self.history:
            plot_learning_curve(self.history, self.path("learning_curve.png"), self.split.train.units)
        self.plotted = time.time()

    def finish(self) -> dict:
        if self.rank != 0:
            return {"test": None, "epochs": self.epoch, "data": self.cfg.data}
        self.plot()
        best = self.path(BEST)
        potential = Potential.load(best, self.cfg.device) if os.path.exists(best) else self.potential
        test = evaluate(potential, self.split.test, forces=self.split.test.forces is not None)
        result = {"test": test, "epochs": self.epoch, "data": self.cfg.data, "best_model": best}
        write_json(self.path("metrics.json"), result)
        return result


def _composition_energy(dataset, species, reference) -> np.ndarray:
    column = {z: i for i, z in enumerate(species)}
    per_atom = np.asarray(reference)[[column[z] for z in dataset.species.tolist()]]
    mol = np.repeat(np.arange(len(dataset)), dataset.counts)
    return np.bincount(mol, weights=per_atom, minlength=len(dataset))


def _progress(iterable, total, desc, enabled):
    """A live progress bar on a terminal; plain iteration in logs (the per-epoch line says it all)."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Train (in every process of a ``torchrun`` launch, if any) and return the test metrics."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if world_size > 1:
        if config.device == "cuda":  # one GPU per process, as torchrun numbers them
            config = dataclasses.replace(config, device=f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
            torch.cuda.set_device(config.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
        rank = dist.get_rank()
    try:
        return Trainer(config, rank, world_size).fit(resume=resume)
    finally:
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
