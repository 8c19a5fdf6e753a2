"""Training controls: weight EMA, learning-rate schedules, gradient clipping, a second stage, early stopping.

The trainer (:mod:`so3net.train.loop`) uses them as follows, once per optimiser step and epoch:

- **EMA** (``ema_decay = d > 0``): after every step, ``θ̄ ← β θ̄ + (1 − β) θ`` for every floating
  parameter, with ``β = min(d, (1 + n) / (10 + n))`` after n updates (the warm-up of ``torch_ema``,
  which MACE uses), so early averages are not dominated by the random initial weights. The averaged
  weights are the ones validated, used for the best-model choice, saved in ``best_model.pt`` and
  tested; training continues on the raw weights. Buffers (e.g. the energy scale) are not averaged.
- **Schedule**: ``cosine`` gives ``lr_min + (lr − lr_min)(1 + cos πp)/2`` at run progress p;
  ``plateau`` keeps ``lr`` until ``plateau_patience`` epochs pass without a better validation score
  (training loss without a validation set), then multiplies it by ``plateau_factor``, never below
  ``lr_min`` (as ``torch.optim.lr_scheduler.ReduceLROnPlateau`` with ``threshold = 0``).
- **Clipping** (``clip_grad_norm = c``): the global 2-norm of all gradients (after the all-reduce of
  a data-parallel run) is scaled down to c when larger (``torch.nn.utils.clip_grad_norm_``).
- **Stage two** (``stage_two_start = s``): from run progress s on, the loss uses
  ``stage_two_energy_weight`` / ``stage_two_force_weight`` and the rate is the constant
  ``stage_two_lr`` (MACE's stage two, formerly SWA: more energy weight, low rate). The normalised
  validation score does not depend on the weights, so the best model is chosen over both stages;
  without a validation set (best = lowest training loss) the record restarts with stage two, whose
  loss is not comparable.
- **Early stopping** (``patience = k > 0``): the run ends after k epochs without a better score.
"""
from __future__ import annotations

import math

import torch

__all__ = ["EMA", "Plateau", "EarlyStopping", "cosine_rate", "clip_gradients"]


def cosine_rate(lr: float, lr_min: float, progress: float) -> float:
    """The cosine schedule from ``lr`` (progress 0) to ``lr_min`` (progress >= 1)."""
    return lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def clip_gradients(parameters, max_norm: float | None) -> float:
    """Scale the gradients so that their global 2-norm is at most ``max_norm`` (None: leave them);
    returns the norm before clipping."""
    params = [p for p in parameters if p.grad is not None]
    if max_norm is None:
        if not params:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


class EMA:
    """Exponential moving average of a module's floating-point parameters (see the module doc)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.updates = float(decay), 0
        self.shadow = {name: p.detach().clone() for name, p in module.named_parameters()
                       if p.dtype.is_floating_point}

    def rate(self) -> float:
        """The decay β used by the next update."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        beta = self.rate()
        for name, p in module.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(beta).add_(p.detach(), alpha=1 - beta)
        self.updates += 1

    def state_dict_of(self, module: torch.nn.Module) -> dict:
        """``module.state_dict()`` with the averaged parameters in place of the raw ones."""
        state = module.state_dict()
        return {k: (self.shadow[k].clone() if k in self.shadow else v) for k, v in state.items()}

    def averaged(self, module: torch.nn.Module):
        """Context manager: ``module`` holds the averaged weights inside, its raw weights after."""
        return _Swapped(self, module)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError(f"the checkpoint's EMA holds parameters {sorted(state['shadow'])}, "
                             f"the model has {sorted(self.shadow)}")
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)


class _Swapped:
    def __init__(self, ema: EMA, module: torch.nn.Module):
        self.ema, self.module, self.raw = ema, module, None

    @torch.no_grad()
    def __enter__(self):
        params = dict(self.module.named_parameters())
        self.raw = {name: params[name].detach().clone() for name in self.ema.shadow}
        for name, value in self.ema.shadow.items():
            params[name].copy_(value)
        return self.module

    @torch.no_grad()
    def __exit__(self, *exc):
        params = dict(self.module.named_parameters())
        for name, value in self.raw.items():
            params[name].copy_(value)
        return False


class Plateau:
    """The plateau schedule's state: the current rate, cut by ``factor`` after ``patience`` epochs
    without a score below the best so far, never below ``floor``."""

    def __init__(self, lr: float, factor: float, patience: int, floor: float):
        self.lr, self.factor, self.patience, self.floor = float(lr), float(factor), int(patience), float(floor)
        self.best, self.bad_epochs = math.inf, 0

    def epoch_end(self, score: float) -> float:
        if score < self.best:
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.lr, self.bad_epochs = max(self.lr * self.factor, self.floor), 0
        return self.lr

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.best, self.bad_epochs = state["lr"], state["best"], state["bad_epochs"]


class EarlyStopping:
    """Stop after ``patience`` epochs (> 0) in a row without a score below the best so far."""

    def __init__(self, patience: int):
        self.patience, self.best, self.bad_epochs = int(patience), math.inf, 0

    def epoch_end(self, score: float) -> bool:
        """Record an epoch's score; True when the run should stop."""
        if score < self.best:
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience

    def reset(self) -> None:
        self.best, self.bad_epochs = math.inf, 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
