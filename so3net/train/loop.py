"""The training loop: energy and force losses, AMSGrad with a cosine or plateau schedule, the
training controls of :mod:`so3net.train.controls` (weight EMA, gradient clipping, a second stage,
early stopping), checkpoints each epoch, ``resume``, metrics CSV (and TensorBoard), learning curve,
best model, and data-parallel training over ``torch.distributed`` (launched with ``torchrun``;
gloo on CPU, NCCL on GPU). Any model class can be trained (:mod:`so3net.train.potential`).

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

from ..data import batch_indices, iterate_batches
from .checkpoint import check_resume_settings, check_writable, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .controls import EMA, EarlyStopping, Plateau, clip_gradients, cosine_rate
from .datasets import load_split, reference_energies
from .potential import Potential, build_model, model_species
from .report import TensorBoardLog, append_csv, evaluate, plot_learning_curve, write_csv, write_json

__all__ = ["Trainer", "train"]

CHECKPOINT = "checkpoint.pt"
BEST = "best_model.pt"
PLOT_EVERY = 60.0  # seconds between redraws of the learning curve during a run (and once at the end)


class Trainer:
    """Train a potential (Cormorant by default) as described by a :class:`TrainConfig`."""

    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1, log=print):
        self.cfg, self.rank, self.world_size, self.log = config, rank, world_size, log
        if config.batch_size < world_size:
            raise ValueError(f"batch_size {config.batch_size} is smaller than the {world_size} processes")
        torch.manual_seed(config.seed)
        self.split = load_split(config)
        train = self.split.train
        if train.energies is None:
            raise ValueError(f"{config.data}: training needs energies, the data has none")
        if config.force_weight > 0 and train.forces is None:
            raise ValueError(f"{config.data}: force_weight > 0 but the data has no forces; set force_weight = 0")
        self.dtype = getattr(torch, config.dtype)
        model = build_model(config.model_class, config.model, config.preset).to(self.dtype).to(config.device)
        species = model_species(model, np.concatenate([part.species for part in self.split]))
        reference = reference_energies(config, train, species, log=log if rank == 0 else _quiet)
        self.potential = Potential(model, reference, train.units, species, config.model_class,
                                   config.model).to(config.device)
        residual = train.energies - _composition_energy(train, species, reference)
        self.var_e = float(max(residual.var(), 1e-12))
        self.var_f = float(max(train.forces.var(), 1e-12)) if train.forces is not None else 1.0
        if callable(getattr(model, "set_energy_reference", None)):
            model.set_energy_reference(scale=math.sqrt(self.var_e))
        elif rank == 0:
            log(f"{config.model_class} has no set_energy_reference(scale=...): its energies are not scaled "
                f"by the training residuals' standard deviation ({math.sqrt(self.var_e):.4g} {train.units['energy']})")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, amsgrad=True,
                                          weight_decay=config.weight_decay)
        self.ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
        self.plateau = Plateau(config.lr, config.plateau_factor, config.plateau_patience, config.lr_min) \
            if config.schedule == "plateau" else None
        self.stopper = EarlyStopping(config.patience)
        self.stage, self.stopped_early, self.grad_norm_max = 1, False, 0.0
        self.tensorboard = TensorBoardLog(self.path("tensorboard")) if config.tensorboard and rank == 0 else None
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
        """The rate at run progress ``progress``: stage two's constant rate, the plateau schedule's
        current rate, or the cosine schedule."""
        cfg = self.cfg
        if self.stage == 2:
            return cfg.stage_two_lr
        if self.plateau is not None:
            return self.plateau.lr
        return cosine_rate(cfg.lr, cfg.lr_min, progress)

    def loss_weights(self) -> tuple[float, float]:
        """(energy weight, force weight) of the current stage."""
        cfg = self.cfg
        if self.stage == 2:
            return cfg.stage_two_energy_weight, (cfg.force_weight if cfg.stage_two_force_weight is None
                                                 else cfg.stage_two_force_weight)
        return cfg.energy_weight, cfg.force_weight

    def begin_stage_two(self) -> None:
        self.stage = 2
        if not len(self.split.valid):      # the best training loss of stage one is not comparable
            self.best = float("inf")
            self.stopper.reset()
        if self.rank == 0:
            e, f = self.loss_weights()
            self.log(f"stage two from step {self.steps}: energy weight {e:g}, force weight {f:g}, "
                     f"lr {self.cfg.stage_two_lr:g}")

    # ------------------------------------------------------------- persistence
    def path(self, name: str) -> str:
        return os.path.join(self.cfg.run_dir, name)

    def save(self) -> None:
        if self.rank != 0:
            return
        state = {"potential": self.potential.to_checkpoint(), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "steps": self.steps, "elapsed": self.elapsed(), "history": self.history,
                 "best": self.best, "config": self.cfg.to_dict(), "torch_rng": torch.get_rng_state(),
                 "controls": self.controls_state()}
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
        self.load_controls_state(state.get("controls", {}))
        if self.rank == 0:  # rows written after the checkpoint by the killed run are dropped
            write_csv(self.path("metrics.csv"), self.history)

    def controls_state(self) -> dict:
        return {"stage": self.stage, "ema": None if self.ema is None else self.ema.state_dict(),
                "plateau": None if self.plateau is None else self.plateau.state_dict(),
                "stopper": self.stopper.state_dict()}

    def load_controls_state(self, state: dict) -> None:
        """Restore the controls; a checkpoint made without one of them (EMA, plateau) must not be
        resumed with it switched on."""
        for name, control in (("ema", self.ema), ("plateau", self.plateau)):
            if control is not None:
                if state.get(name) is None:
                    raise ValueError(f"--resume: the checkpoint was made without {name} (ema_decay / schedule "
                                     "settings differ); resume with the settings of the original run")
                control.load_state_dict(state[name])
        if "stopper" in state:
            self.stopper.load_state_dict(state["stopper"])
        self.stage = state.get("stage", 1)

    def averaged_state(self) -> dict | None:
        """The weights to validate, save as best and test: the EMA ones, or None (the raw weights)."""
        return None if self.ema is None else self.ema.state_dict_of(self.potential.model)

    # ------------------------------------------------------------- one step
    def loss(self, b, counts: tuple[int, int]) -> torch.Tensor:
        """This rank's share of the normalised loss of the global batch (``counts`` = global
        molecules, global atoms)."""
        model = self.potential.model
        energy_weight, force_weight = self.loss_weights()
        pos = b.positions.to(self.dtype)
        target_e = (b.energies - self.potential.reference_energy(b.species, b.batch, b.n_molecules)).to(self.dtype)
        if force_weight > 0:
            energies, forces = model.energy_and_forces(pos, b.species, b.batch, create_graph=True)
            f_term = ((forces - b.forces.to(self.dtype)) ** 2).sum() / (3 * counts[1] * self.var_f)
        else:
            energies, f_term = model(pos, b.species, b.batch), 0.0
        e_term = ((energies - target_e) ** 2).sum() / (counts[0] * self.var_e)
        return energy_weight * e_term + force_weight * f_term

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
        if self.stage == 1 and self.cfg.stage_two_start is not None and progress >= self.cfg.stage_two_start:
            self.begin_stage_two()
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
        if self.cfg.clip_grad_norm is not None:
            self.grad_norm_max = max(self.grad_norm_max, clip_gradients(params, self.cfg.clip_grad_norm))
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.potential.model)
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
        while self.epoch < cfg.epochs and not self.out_of_time and not self.stopped_early:
            self.grad_norm_max = 0.0
            train_loss = self.run_epoch()
            if self.out_of_time and math.isnan(train_loss):
                break
            self.epoch += 1
            row = {"epoch": self.epoch, "train_loss": train_loss, "lr": self.optimizer.param_groups[0]["lr"],
                   "seconds": self.elapsed()}
            if cfg.stage_two_start is not None:
                row["stage"] = self.stage
            if cfg.clip_grad_norm is not None:
                row["grad_norm_max"] = self.grad_norm_max     # before clipping
            score = self.epoch_score(row, train_loss)
            self.history.append(row)
            if self.rank == 0:
                self._record(row, score)
            self.end_of_epoch_controls(score)
        if self.out_of_time and self.rank == 0:
            self.log(f"time limit of {cfg.time_limit:.0f} s reached after {self.steps} steps ({self.epoch} epochs)")
        return self.finish()

    def epoch_score(self, row: dict, train_loss: float) -> float:
        """The validation score (normalised energy + force MAE, of the EMA weights when averaging) added
        to ``row``; the training loss without a validation set. Every rank gets rank 0's score."""
        score = train_loss
        if len(self.split.valid) and self.rank == 0:
            if self.ema is not None:
                with self.ema.averaged(self.potential.model):
                    v = evaluate(self.potential, self.split.valid, forces=self.split.valid.forces is not None)
            else:
                v = evaluate(self.potential, self.split.valid, forces=self.split.valid.forces is not None)
            row.update(valid_energy_mae=v["energy_mae"], valid_force_mae=v.get("force_mae", float("nan")))
            score = v["energy_mae"] / math.sqrt(self.var_e) + v.get("force_mae", 0.0) / math.sqrt(self.var_f)
        if self.world_size > 1:   # the plateau schedule and early stopping must decide alike on all ranks
            shared = torch.tensor([score], dtype=torch.float64)
            dist.broadcast(shared, 0)
            score = float(shared[0])
        return score

    def end_of_epoch_controls(self, score: float) -> None:
        """The plateau schedule and early stopping see the epoch's score."""
        if self.plateau is not None and self.stage == 1:
            before = self.plateau.lr
            if self.plateau.epoch_end(score) < before and self.rank == 0:
                self.log(f"plateau: learning rate {before:.3g} -> {self.plateau.lr:.3g}")
        if self.stopper.epoch_end(score):
            self.stopped_early = True
            if self.rank == 0:
                self.log(f"early stopping: no better score in the last {self.cfg.patience} epochs "
                         f"(epoch {self.epoch})")

    def _record(self, row: dict, score: float) -> None:
        if score < self.best:
            self.best = score
            save_checkpoint(self.potential.to_checkpoint(self.averaged_state()), self.path(BEST))
        self.save()
        append_csv(self.path("metrics.csv"), row)
        if self.tensorboard is not None:
            self.tensorboard.write(row)
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
        if self.tensorboard is not None:
            self.tensorboard.close()
        best = self.path(BEST)
        if not os.path.exists(best):   # no epoch finished: the current (averaged) weights are the best
            torch.save(self.potential.to_checkpoint(self.averaged_state()), best)
        potential = Potential.load(best, self.cfg.device)
        test = evaluate(potential, self.split.test, forces=self.split.test.forces is not None)
        result = {"test": test, "epochs": self.epoch, "data": self.cfg.data, "best_model": best,
                  "stopped_early": self.stopped_early}
        write_json(self.path("metrics.json"), result)
        return result


def _composition_energy(dataset, species, reference) -> np.ndarray:
    column = {z: i for i, z in enumerate(species)}
    per_atom = np.asarray(reference)[[column[z] for z in dataset.species.tolist()]]
    mol = np.repeat(np.arange(len(dataset)), dataset.counts)
    return np.bincount(mol, weights=per_atom, minlength=len(dataset))


def _quiet(*_):
    pass


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
