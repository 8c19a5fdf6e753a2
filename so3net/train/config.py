"""The training configuration: one dataclass, read from TOML and overridden by command-line flags.

Every field carries its help text (``metadata["help"]``, and ``metadata["choices"]`` where the
values are a fixed list); ``so3net train``'s flags are generated from these fields
(:func:`so3net.cli._train_parser`), so a setting cannot exist without its flag and help.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["TrainConfig", "load_config", "DEFAULT_MODEL_CLASS"]

#: accepted Python types of each annotation (an int is accepted where a float is expected)
_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,),
          "int | None": (int, type(None)), "float | None": (int, float, type(None))}

DEFAULT_MODEL_CLASS = "so3net.models:Cormorant"
SCHEDULES = ("cosine", "plateau")


def _setting(default, help: str, choices: tuple | None = None):
    """A dataclass field with its command-line help (and fixed choices, if any)."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": choices}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a run needs. Units are those of the training data (energies, lengths) throughout.

    The loss is ``energy_weight * MSE(E) / var(E_train) + force_weight * MSE(F) / var(F_train)``
    (variances of the training targets, so the weights are dimensionless). The optimiser is
    AMSGrad (Adam with ``amsgrad=True``), as in the Cormorant paper. The learning rate follows a
    cosine schedule from ``lr`` to ``lr_min`` over all steps of ``epochs`` (or the time limit), or
    the plateau schedule; the training controls (EMA, clipping, stage two, early stopping) are
    described in :mod:`so3net.train.controls`.
    """
    # ---- data
    data: str = _setting("ethanol_gfn2xtb", "data file or name: MD17/sGDML .npz, revised MD17 .npz, extended "
                         "XYZ, QM9 xyz, 'qm9', or a shipped name (ethanol_gfn2xtb)")
    valid_data: str = _setting("", "separate validation file (all its molecules); then `data` is split into "
                               "train and test only and n_valid is not used ('' = split from data)")
    test_data: str = _setting("", "separate test file (all its molecules); then n_test is not used "
                              "('' = split from data)")
    energy_key: str = _setting("energy", "extended XYZ: the comment-line key holding the energy")
    forces_key: str = _setting("forces", "extended XYZ: the per-atom property holding the forces")
    energy_unit: str = _setting("", "extended XYZ: energy unit of the files (eV, meV, Hartree, kcal/mol, "
                                "kJ/mol; '' = the reader's default, eV)")
    length_unit: str = _setting("", "extended XYZ: length unit of the files (Angstrom, Bohr, nm; '' = Angstrom)")
    e0s: dict = _setting({}, "per-element reference energies in the training data's energy unit, "
                         "ELEMENT=VALUE with a symbol or atomic number (repeatable, TOML table [e0s]); "
                         "empty: fitted by least squares on the training energies")
    n_train: int = _setting(800, "number of training molecules (from a seeded permutation of `data`)")
    n_valid: int = _setting(100, "number of validation molecules (0: none; the best model is then the "
                            "epoch with the lowest training loss)")
    n_test: int | None = _setting(200, "number of test molecules ('none': all the rest)")
    seed: int = _setting(0, "seed of the split (numpy default_rng(seed).permutation), of the batches and "
                         "of the weights")
    # ---- optimisation
    epochs: int = _setting(8, "number of epochs (an upper bound when time_limit is set)")
    time_limit: float | None = _setting(240.0, "seconds of training ('none': no limit); the cosine schedule "
                                        "runs on max(step fraction, time fraction)")
    batch_size: int = _setting(16, "molecules per optimiser step (over all processes)")
    lr: float = _setting(5e-3, "initial learning rate")
    lr_min: float = _setting(1e-5, "final learning rate of the cosine schedule; floor of the plateau schedule")
    schedule: str = _setting("cosine", "learning-rate schedule: 'cosine' (lr -> lr_min over the run) or "
                             "'plateau' (lr times plateau_factor after plateau_patience epochs without a "
                             "better validation score)", SCHEDULES)
    plateau_patience: int = _setting(5, "plateau schedule: epochs without improvement before the rate is cut")
    plateau_factor: float = _setting(0.5, "plateau schedule: factor (0 < f < 1) applied to the rate")
    patience: int = _setting(0, "early stopping: stop after this many epochs without a better validation "
                             "score (0: never)")
    weight_decay: float = _setting(0.0, "L2 weight decay of AMSGrad")
    clip_grad_norm: float | None = _setting(None, "clip the global gradient norm to this value before each "
                                            "step ('none': no clipping)")
    ema_decay: float = _setting(0.0, "exponential moving average of the weights with this decay (e.g. 0.99; "
                                "0: off); the averaged weights are validated, tested and saved")
    energy_weight: float = _setting(1.0, "weight of the normalised energy MSE in the loss")
    force_weight: float = _setting(1.0, "weight of the normalised force MSE in the loss (0: energies only)")
    stage_two_start: float | None = _setting(None, "start the second stage (as MACE's stage two / SWA) at this "
                                             "fraction of the run's progress, 0 < p < 1 ('none': one stage)")
    stage_two_lr: float = _setting(1e-4, "second stage: constant learning rate")
    stage_two_energy_weight: float = _setting(10.0, "second stage: energy weight of the loss")
    stage_two_force_weight: float | None = _setting(None, "second stage: force weight ('none': keep force_weight)")
    # ---- model
    model_class: str = _setting(DEFAULT_MODEL_CLASS, "the model, 'package.module:Class': an nn.Module whose call "
                                "(positions, species, batch) gives energies (M,) and whose energy_and_forces("
                                "positions, species, batch, create_graph) gives (energies, forces); built as "
                                "Class(**model) (Cormorant: Cormorant(preset, **model))")
    preset: str = _setting("md17", "Cormorant preset (model_class Cormorant only)", ("qm9", "md17"))
    model: dict = _setting({}, "options of the model class, KEY=VALUE (repeatable, TOML table [model]); "
                           "for Cormorant the CormorantConfig fields, e.g. num_cg_levels=2")
    dtype: str = _setting("float32", "dtype of the model weights", ("float32", "float64"))
    # ---- running
    device: str = _setting("cpu", "cpu or cuda[:N]")
    run_dir: str = _setting("runs/latest", "folder for checkpoints, metrics and plots")
    progress: bool = _setting(True, "progress bars on a terminal")
    tensorboard: bool = _setting(False, "also log each epoch's metrics to TensorBoard in run_dir/tensorboard "
                                 "(needs the optional dependency: pip install 'so3net[tensorboard]')")
    threads: int = _setting(1, "torch intra-op threads on the CPU (0: torch's default); Cormorant's many "
                            "small ops run fastest on one")

    def __post_init__(self):
        for f in fields(self):
            value, kinds = getattr(self, f.name), _KINDS[f.type]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f"setting {f.name!r} must be of type {f.type}, got {value!r}")
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ValueError(f"setting {f.name!r} must be one of {list(choices)}, got {value!r}")
        if self.lr <= 0 or not 0 <= self.lr_min <= self.lr:
            raise ValueError(f"need lr > 0 and 0 <= lr_min <= lr, got lr = {self.lr}, lr_min = {self.lr_min}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit must be a positive number of seconds, got {self.time_limit}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 keeps torch's default), got {self.threads}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.energy_weight < 0 or self.force_weight < 0 or self.energy_weight + self.force_weight == 0:
            raise ValueError("energy_weight and force_weight must be >= 0 and not both 0")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no averaging), got {self.ema_decay}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be > 0 or none, got {self.clip_grad_norm}")
        if self.plateau_patience < 0 or self.patience < 0:
            raise ValueError(f"plateau_patience and patience must be >= 0, got {self.plateau_patience} "
                             f"and {self.patience}")
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor}")
        if self.stage_two_start is not None:
            if not 0 < self.stage_two_start < 1:
                raise ValueError(f"stage_two_start must be a fraction of the run in (0, 1), got {self.stage_two_start}")
            two_f = self.force_weight if self.stage_two_force_weight is None else self.stage_two_force_weight
            if self.stage_two_lr <= 0 or self.stage_two_energy_weight < 0 or two_f < 0 \
                    or self.stage_two_energy_weight + two_f == 0:
                raise ValueError("stage two needs stage_two_lr > 0 and energy/force weights >= 0, not both 0")
        if ":" not in self.model_class or not all(self.model_class.partition(":")[::2]):
            raise ValueError(f"model_class must be 'package.module:Class', got {self.model_class!r}")
        for key, value in self.e0s.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"e0s[{key!r}] must be a number (an energy), got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_missing = [f.name for f in fields(TrainConfig) if not f.metadata.get("help")]
if _missing:  # a developer error: every setting must have its flag's help text
    raise TypeError(f"TrainConfig settings without help text: {_missing}")


def load_config(path: str | None = None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML file (keys are the field names; ``[model]`` and ``[e0s]``
    tables hold model options and reference energies) with ``overrides`` (None values ignored)
    applied on top."""
    values: dict = {}
    if path is not None:
        with open(path, "rb") as fh:
            try:
                values = tomllib.load(fh)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"{path}: not valid TOML ({err})") from None
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}; valid settings are {sorted(known)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)
