"""The ``so3net`` command: ``train``, ``evaluate``, ``predict``.

``so3net train`` with no arguments trains Cormorant on the shipped GFN2-xTB ethanol data set and
prints the test MAE. Every setting of :class:`so3net.train.TrainConfig` can come from a TOML file
(``--config``) and be overridden by a flag; the flags are generated from the dataclass fields and
their help texts, so they cannot drift from the settings.
Distributed: ``torchrun --nproc_per_node 2 -m so3net.cli train ...``.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

__all__ = ["main"]


_NONE = "none"


def _optional(kind):
    """argparse type for ``int | None`` / ``float | None`` settings: a number or 'none'."""
    def parse(text: str):
        if text.strip().lower() == _NONE:
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} or 'none', got {text!r}") from None
    parse.__name__ = f"{kind.__name__} or none"
    return parse


_FLAG_TYPES = {"str": str, "int": int, "float": float, "int | None": _optional(int), "float | None": _optional(float)}


def _train_parser(sub) -> argparse.ArgumentParser:
    """``so3net train``: one flag per :class:`~so3net.train.TrainConfig` field, generated from the
    dataclass (name, type, choices and help), plus ``--config`` and ``--resume``."""
    from dataclasses import fields

    from .train.config import TrainConfig

    p = sub.add_parser("train", help="train a potential (default: Cormorant on the shipped ethanol data)",
                       description="Train a potential. Every flag overrides the TrainConfig setting of the same "
                                   "name (underscores for dashes) from --config; defaults in brackets.")
    p.add_argument("--config", help="TOML file with TrainConfig settings (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        help_text = f"{f.metadata['help']} [{default!r}]" if f.type != "dict" else f.metadata["help"]
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif f.type == "dict":
            p.add_argument(flag, action="append", metavar="KEY=VALUE", **kwargs)
        else:
            p.add_argument(flag, type=_FLAG_TYPES[f.type], choices=f.metadata.get("choices"), **kwargs)
    return p


def _parse_model(items: list[str], flag: str = "--model") -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value.replace("(", "[").replace(")", "]"))
        except json.JSONDecodeError:
            out[key] = value
        if isinstance(out[key], list):
            out[key] = tuple(out[key])
    return out


def cmd_train(args) -> int:
    import dataclasses

    from .train import load_config, train
    from .train.config import TrainConfig

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    dicts = {name: _parse_model(given.pop(name), "--" + name.replace("_", "-"))
             for name in [n for n, v in given.items() if isinstance(v, list)]}
    cfg = load_config(args.config, **{k: v for k, v in given.items() if v is not None})
    unset = {k: None for k, v in given.items() if v is None}          # flags given as 'none'
    merged = {name: {**getattr(cfg, name), **values} for name, values in dicts.items()}
    if unset or merged:
        cfg = dataclasses.replace(cfg, **unset, **merged)
    result = train(cfg, resume=args.resume)
    test = result["test"]
    if test is not None:
        line = f"test energy MAE {test['energy_mae']:.4f} {test['energy_unit']}"
        if "force_mae" in test:
            line += f", force MAE {test['force_mae']:.4f} {test['force_unit']}"
        print(f"{line}  ({test['n_molecules']} test molecules; {cfg.run_dir}/metrics.json)")
    return 0


def cmd_evaluate(args) -> int:
    from .data import load
    from .train import Potential, evaluate

    potential = Potential.load(args.model, args.device)
    data = load(args.data)
    if data.energies is None:
        raise SystemExit(f"{args.data}: evaluation needs reference energies, the data has none")
    data = data.convert(energy=potential.units["energy"], length=potential.units["length"])
    metrics = evaluate(potential, data, forces=data.forces is not None)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_predict(args) -> int:
    from .data import collate, load
    from .train import Potential

    potential = Potential.load(args.model, args.device)
    data = load(args.structures)
    data = data.convert(length=potential.units["length"])
    b = collate(data, dtype=potential.dtype, device=args.device)
    energies, forces = potential.energy_and_forces(b.positions, b.species, b.batch, create_graph=False)
    out = {"energy_unit": potential.units["energy"],
           "force_unit": f"{potential.units['energy']}/{potential.units['length']}",
           "energies": energies.detach().cpu().tolist(),
           "forces": [f.tolist() for f in torch.split(forces.detach().cpu(), b.counts.tolist())]}
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(out, fh)
        print(f"wrote {len(out['energies'])} energies and forces to {args.output}")
    else:
        for i, e in enumerate(out["energies"]):
            print(f"structure {i}: E = {e:.6f} {out['energy_unit']}, max |F| = "
                  f"{np.abs(np.asarray(out['forces'][i])).max():.4f} {out['force_unit']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="so3net", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    _train_parser(sub)
    e = sub.add_parser("evaluate", help="MAE/RMSE of a trained model on a data set (in the data's units)")
    e.add_argument("model", help="a best_model.pt or checkpoint.pt")
    e.add_argument("data", help="data file or name")
    e.add_argument("--device", default="cpu")
    p = sub.add_parser("predict", help="energies and forces for the structures of a file (xyz, npz)")
    p.add_argument("model")
    p.add_argument("structures")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", help="write JSON here instead of printing")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv or ["train"])
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}
    if args.command is None:
        args = parser.parse_args(["train"])
    try:
        return commands[args.command](args)
    except (ValueError, OSError) as err:  # bad settings, data or files: the message says what and where
        print(f"so3net {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
