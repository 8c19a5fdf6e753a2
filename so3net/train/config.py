"""The training configuration: one dataclass, read from TOML and overridden by command-line flags."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["TrainConfig", "load_config"]

#: accepted Python types of each annotation (an int is accepted where a float is expected)
_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,),
          "int | None": (int, type(None)), "float | None": (int, float, type(None))}


@dataclass
class TrainConfig:
    """Everything a run needs. Units are those of the data (energies, lengths) throughout.

    The loss is ``energy_weight * MSE(E) / var(E_train) + force_weight * MSE(F) / var(F_train)``
    (variances of the training targets, so the weights are dimensionless). The learning rate
    follows a cosine schedule from ``lr`` to ``lr_min`` over all steps of ``epochs``; the
    optimiser is AMSGrad (Adam with ``amsgrad=True``), as in the Cormorant paper.
    """
    data: str = "ethanol_gfn2xtb"
    n_train: int = 800
    n_valid: int = 100
    n_test: int | None = 200
    seed: int = 0
    epochs: int = 8
    time_limit: float | None = 240.0         # seconds of training (None: no limit); the default run fits in 5 minutes
    batch_size: int = 16
    lr: float = 5e-3
    lr_min: float = 1e-5
    weight_decay: float = 0.0
    energy_weight: float = 1.0
    force_weight: float = 1.0
    dtype: str = "float32"
    device: str = "cpu"
    run_dir: str = "runs/latest"
    preset: str = "md17"
    model: dict = field(default_factory=dict)   # overrides of CormorantConfig
    progress: bool = True
    threads: int = 1                            # torch intra-op threads on the CPU (0: torch's default);
                                                # Cormorant's many small ops run fastest on one

    def __post_init__(self):
        for f in fields(self):
            value, kinds = getattr(self, f.name), _KINDS[f.type]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f"setting {f.name!r} must be of type {f.type}, got {value!r}")
        if self.lr <= 0 or not 0 <= self.lr_min <= self.lr:
            raise ValueError(f"need lr > 0 and 0 <= lr_min <= lr, got lr = {self.lr}, lr_min = {self.lr_min}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit must be a positive number of seconds, got {self.time_limit}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 keeps torch's default), got {self.threads}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.energy_weight < 0 or self.force_weight < 0 or self.energy_weight + self.force_weight == 0:
            raise ValueError("energy_weight and force_weight must be >= 0 and not both 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | None = None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML file (keys are the field names; a ``[model]`` table holds
    model overrides) with ``overrides`` (None values ignored) applied on top."""
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
