"""Training controls (issue 16): weight EMA, gradient clipping, the plateau schedule and early
stopping, the second stage, any model class through the CLI, data options (separate validation and
test files, extended-XYZ keys and units, given E0s), TensorBoard, and the generated flags.

Tiny models on a few molecules of the shipped GFN2-xTB ethanol set keep every test fast.
"""
import argparse
import json
import os
import sys
from dataclasses import fields

import ase
import ase.io
import numpy as np
import pytest
import torch

from so3net.cli import _train_parser, main
from so3net.data import energy_factor, load
from so3net.train import Potential, TrainConfig, Trainer, evaluate
from so3net.train.controls import EMA, EarlyStopping, Plateau

from helpers import TINY, tiny_config



def quiet(*_):
    pass


def scripted_scores(trainer, scores):
    """Replace the validation score of each epoch by ``scores`` (the loop's decisions are under test)."""
    it = iter(scores)
    trainer.epoch_score = lambda row, train_loss: next(it)


# ------------------------------------------------------------------ EMA
def test_ema_update_rule_with_warm_up():
    module = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema = EMA(module, 0.9)
    expected = 1.0
    for n, value in enumerate([3.0, -1.0, 5.0, 2.0] + [0.0] * 20):
        with torch.no_grad():
            module.weight.fill_(value)
        beta = min(0.9, (1 + n) / (10 + n))
        assert ema.rate() == pytest.approx(beta)
        ema.update(module)
        expected = beta * expected + (1 - beta) * value
        assert float(ema.shadow["weight"]) == pytest.approx(expected, rel=1e-6)
    with ema.averaged(module):
        assert float(module.weight.detach()) == pytest.approx(expected, rel=1e-6)
    assert float(module.weight.detach()) == 0.0                       # raw weights back after the block


def test_ema_weights_differ_from_raw_and_are_what_best_model_holds(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=1, ema_decay=0.9), log=quiet)
    result = trainer.fit()
    saved = torch.load(os.path.join(trainer.cfg.run_dir, "best_model.pt"), weights_only=False)["model_state"]
    raw = trainer.potential.model.state_dict()
    differ = 0
    for name, shadow in trainer.ema.shadow.items():
        assert torch.equal(saved[name], shadow), name         # best_model.pt holds the averaged weights
        differ += not torch.allclose(shadow, raw[name])
    assert differ >= len(trainer.ema.shadow) // 2              # and they are not the raw weights
    # the test metrics are those of the averaged weights
    with trainer.ema.averaged(trainer.potential.model):
        averaged = evaluate(trainer.potential, trainer.split.test)
    assert result["test"]["force_mae"] == pytest.approx(averaged["force_mae"], rel=1e-6)
    assert result["test"]["force_mae"] != pytest.approx(evaluate(trainer.potential, trainer.split.test)["force_mae"],
                                                        rel=1e-6)


# ------------------------------------------------------------------ clipping
def test_clipping_bounds_the_gradient_norm(tmp_path):
    bound = 1e-3
    trainer = Trainer(tiny_config(tmp_path, clip_grad_norm=bound), log=quiet)
    norms, step = [], trainer.optimizer.step

    def measured_step(*args, **kwargs):
        grads = [p.grad for p in trainer.potential.model.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(*args, **kwargs)

    trainer.optimizer.step = measured_step
    trainer.fit()
    assert len(norms) == trainer.steps == 6
    assert max(norms) <= bound * (1 + 1e-5)
    assert all(row["grad_norm_max"] > 10 * bound for row in trainer.history)   # clipping did act


# ------------------------------------------------------------------ plateau schedule and early stopping
def test_patience_stops_the_run(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=20, patience=2), log=quiet)
    scripted_scores(trainer, [1.0, 0.5, 0.7, 0.4, 0.45, 0.41, 0.3])
    result = trainer.fit()
    assert trainer.epoch == 6 and result["stopped_early"]     # one bad epoch (3) is tolerated; 5 and 6 are two
    assert [row["epoch"] for row in trainer.history] == list(range(1, 7))
    stopper = EarlyStopping(0)
    assert not any(stopper.epoch_end(1.0) for _ in range(50))  # 0: never stops


def test_plateau_schedule_cuts_the_rate(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=7, schedule="plateau", plateau_patience=1, plateau_factor=0.5,
                                  lr=1e-2, lr_min=2e-3), log=quiet)
    scripted_scores(trainer, [1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.8])
    trainer.fit()
    # the rate of epoch k+1 follows the scores up to epoch k; two bad epochs in a row halve it, floor lr_min
    assert [row["lr"] for row in trainer.history] == pytest.approx([1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 5e-3, 2.5e-3])
    plateau = Plateau(1.0, 0.1, 0, 0.05)
    assert [plateau.epoch_end(s) for s in (1.0, 2.0, 2.0, 2.0)] == pytest.approx([1.0, 0.1, 0.05, 0.05])


# ------------------------------------------------------------------ stage two
def test_stage_two_switches_rate_and_loss_weights(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=4, stage_two_start=0.5, stage_two_lr=3e-4,
                                  stage_two_energy_weight=7.0, stage_two_force_weight=0.5), log=quiet)
    assert trainer.loss_weights() == (1.0, 1.0)
    trainer.fit()
    assert [row["stage"] for row in trainer.history] == [1, 1, 2, 2]     # 3 steps per epoch; step 6 of 12
    assert [row["lr"] for row in trainer.history[2:]] == [3e-4, 3e-4]
    assert trainer.history[1]["lr"] > 3e-4
    assert trainer.loss_weights() == (7.0, 0.5)
    with pytest.raises(ValueError, match="stage_two_start"):
        tiny_config(tmp_path, stage_two_start=1.5)


# ------------------------------------------------------------------ resume keeps the controls
def test_resume_restores_ema_and_refuses_other_settings(tmp_path):
    first = Trainer(tiny_config(tmp_path, epochs=1, ema_decay=0.9), log=quiet)
    first.fit()
    again = Trainer(tiny_config(tmp_path, epochs=1, ema_decay=0.9), log=quiet)
    again.restore()
    for name, value in first.ema.shadow.items():
        assert torch.equal(again.ema.shadow[name], value)
    assert again.ema.updates == first.ema.updates == 3
    with pytest.raises(ValueError, match="schedule: 'cosine' in the checkpoint, 'plateau' now"):
        Trainer(tiny_config(tmp_path, epochs=1, ema_decay=0.9, schedule="plateau"), log=quiet).restore()


# ------------------------------------------------------------------ any model class, through the CLI
PAIR_MODEL = '''
import torch


class PairModel(torch.nn.Module):
    """E = sum over atom pairs of an MLP of the distance and the two species (a test model)."""

    def __init__(self, hidden=8):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(9, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 1))

    def forward(self, positions, species, batch):
        same = batch[:, None] == batch[None, :]
        i, j = torch.nonzero(same & ~torch.eye(len(batch), dtype=torch.bool), as_tuple=True)
        r = (positions[i] - positions[j]).norm(dim=1, keepdim=True)
        e = self.mlp(torch.cat([torch.exp(-r), self.embed(species[i]), self.embed(species[j])], 1))[:, 0]
        m = int(batch.max()) + 1
        return e.new_zeros(m).index_add(0, batch[i], 0.5 * e)

    def energy_and_forces(self, positions, species, batch, create_graph=None):
        if create_graph is None:
            create_graph = self.training and torch.is_grad_enabled()
        with torch.enable_grad():
            pos = positions.detach().requires_grad_(True)
            energies = self(pos, species, batch)
            (grad,) = torch.autograd.grad(energies.sum(), pos, create_graph=create_graph)
        return energies, -grad


class NoForces(torch.nn.Module):
    pass
'''


@pytest.fixture
def model_module(tmp_path, monkeypatch):
    (tmp_path / "so3net_test_pairmod.py").write_text(PAIR_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "so3net_test_pairmod"
    sys.modules.pop("so3net_test_pairmod", None)


def test_a_custom_model_class_trains_through_the_cli(tmp_path, model_module, capsys):
    run_dir = str(tmp_path / "run")
    argv = ["train", "--n-train", "12", "--n-valid", "4", "--n-test", "4", "--epochs", "3", "--batch-size", "4",
            "--model-class", f"{model_module}:PairModel", "--model", "hidden=16", "--run-dir", run_dir,
            "--no-progress", "--ema-decay", "0.5"]
    assert main(argv) == 0
    assert "test energy MAE" in capsys.readouterr().out
    potential = Potential.load(os.path.join(run_dir, "best_model.pt"))
    assert type(potential.model).__name__ == "PairModel" and potential.model.mlp[0].out_features == 16
    assert potential.model_class == f"{model_module}:PairModel" and potential.species == (1, 6, 8)
    with open(os.path.join(run_dir, "metrics.json")) as fh:
        test = json.load(fh)["test"]
    data = load("ethanol_gfn2xtb").split(12, 4, 4, seed=0).test
    again = evaluate(potential, data)
    assert again["force_mae"] == pytest.approx(test["force_mae"], rel=1e-6)
    with open(os.path.join(run_dir, "metrics.csv")) as fh:
        losses = [float(line.split(",")[1]) for line in fh.readlines()[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]      # it trains


@pytest.mark.parametrize("name, words", [
    ("no_such_module_xyz:Model", ["cannot import", "no_such_module_xyz"]),
    ("{mod}:Missing", ["no torch.nn.Module subclass", "'Missing'"]),
    ("{mod}:NoForces", ["energy_and_forces"]),
    ("NoColon", ["package.module:Class"]),
])
def test_bad_model_classes_are_named(tmp_path, model_module, capsys, name, words):
    argv = ["train", "--model-class", name.format(mod=model_module), "--n-train", "12", "--n-valid", "4",
            "--n-test", "4", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 2
    message = capsys.readouterr().err
    for word in words:
        assert word in message, message


# ------------------------------------------------------------------ data options
def _write_xyz(path, dataset, energy_key, forces_key, factor):
    frames = []
    for mol in dataset:
        atoms = ase.Atoms(numbers=mol.species, positions=mol.positions)
        atoms.info[energy_key] = mol.energy * factor
        atoms.arrays[forces_key] = np.asarray(mol.forces) * factor
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def test_separate_validation_and_test_files_with_keys_and_units(tmp_path, capsys):
    data = load("ethanol_gfn2xtb")
    paths = {}
    to_hartree = energy_factor("kcal/mol", "Hartree")
    for name, index in (("train", range(0, 16)), ("valid", range(100, 105)), ("test", range(200, 207))):
        paths[name] = str(tmp_path / f"{name}.xyz")
        _write_xyz(paths[name], data[np.array(index)], "E_xtb", "F_xtb", to_hartree)
    run_dir = str(tmp_path / "run")
    argv = ["train", "--data", paths["train"], "--valid-data", paths["valid"], "--test-data", paths["test"],
            "--energy-key", "E_xtb", "--forces-key", "F_xtb", "--energy-unit", "Hartree", "--n-train", "12",
            "--n-test", "none", "--epochs", "1", "--batch-size", "4", "--run-dir", run_dir, "--no-progress"]
    for key, value in TINY.items():
        argv += ["--model", f"{key}={json.dumps(value)}"]
    assert main(argv) == 0
    with open(os.path.join(run_dir, "metrics.json")) as fh:
        test = json.load(fh)["test"]
    assert test["n_molecules"] == 7 and test["energy_unit"] == "Hartree"
    potential = Potential.load(os.path.join(run_dir, "best_model.pt"))
    again = evaluate(potential, data[np.arange(200, 207)].convert(energy="Hartree"))
    assert again["energy_mae"] == pytest.approx(test["energy_mae"], rel=1e-6)
    with open(os.path.join(run_dir, "metrics.csv")) as fh:
        assert "valid_force_mae" in fh.readline()
    # without the keys, the default 'energy' key finds nothing, and that is reported
    capsys.readouterr()
    at = argv.index("--energy-key")
    assert main(argv[:at] + argv[at + 6:]) == 2
    assert "train.xyz: the training data has no energies (energy_key 'energy'" in capsys.readouterr().err


def test_xyz_options_on_npz_data_are_an_error(tmp_path):
    with pytest.raises(ValueError, match="extended XYZ files"):
        Trainer(tiny_config(tmp_path, energy_key="E_xtb"), log=quiet)


def test_given_e0s_are_the_reference(tmp_path):
    fitted = Trainer(tiny_config(tmp_path), log=quiet)
    ref = fitted.potential.reference.numpy()          # species (1, 6, 7, 8) of the md17 preset
    given = Trainer(tiny_config(tmp_path, e0s={"H": float(ref[0]), "6": float(ref[1]), "O": float(ref[3])}),
                    log=quiet)
    np.testing.assert_allclose(given.potential.reference.numpy(), [ref[0], ref[1], 0.0, ref[3]], rtol=1e-12)
    assert given.var_e == pytest.approx(fitted.var_e, rel=1e-9)
    with pytest.raises(ValueError, match=r"no reference energy for the elements \[8\]"):
        Trainer(tiny_config(tmp_path, e0s={"H": -1.0, "C": -2.0}), log=quiet)
    with pytest.raises(ValueError, match="'Xx' is neither"):
        Trainer(tiny_config(tmp_path, e0s={"Xx": -1.0, "H": -1.0, "C": -2.0, "O": -3.0}), log=quiet)


# ------------------------------------------------------------------ TensorBoard
def test_tensorboard_log_holds_each_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = Trainer(tiny_config(tmp_path, tensorboard=True), log=quiet)
    trainer.fit()
    events = EventAccumulator(os.path.join(trainer.cfg.run_dir, "tensorboard"))
    events.Reload()
    assert {"train_loss", "lr", "valid_energy_mae", "valid_force_mae"} <= set(events.Tags()["scalars"])
    losses = events.Scalars("train_loss")
    assert [e.step for e in losses] == [1, 2]
    assert [e.value for e in losses] == pytest.approx([row["train_loss"] for row in trainer.history], rel=1e-6)


def test_tensorboard_missing_is_reported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import fails as if not installed
    with pytest.raises(ValueError, match=r"pip install 'so3net\[tensorboard\]'"):
        Trainer(tiny_config(tmp_path, tensorboard=True), log=quiet)


# ------------------------------------------------------------------ flags generated from the config
def _train_flags():
    sub = argparse.ArgumentParser().add_subparsers()
    parser = _train_parser(sub)
    return {a.dest: a for a in parser._actions}


def test_every_setting_has_a_flag_with_help():
    actions = _train_flags()
    for f in fields(TrainConfig):
        assert f.name in actions, f"no flag for setting {f.name}"
        action = actions[f.name]
        assert "--" + f.name.replace("_", "-") in action.option_strings
        assert f.metadata["help"] in action.help
        if "choices" in f.metadata:
            assert tuple(action.choices) == f.metadata["choices"]


def test_flags_override_the_config_including_none(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("so3net.train.train", lambda cfg, resume=False: seen.setdefault("cfg", cfg) and
                        {"test": None})
    path = tmp_path / "c.toml"
    path.write_text("clip_grad_norm = 2.0\nn_test = 5\n[model]\nmaxl = 1\n[e0s]\nH = -1.5\n")
    assert main(["train", "--config", str(path), "--clip-grad-norm", "none", "--ema-decay", "0.99",
                 "--schedule", "plateau", "--weight-decay", "1e-6", "--model", "num_channels=3",
                 "--e0s", "C=-2", "--no-progress", "--tensorboard"]) == 0
    cfg = seen["cfg"]
    assert cfg.clip_grad_norm is None and cfg.n_test == 5 and cfg.ema_decay == 0.99 and cfg.schedule == "plateau"
    assert cfg.weight_decay == 1e-6 and cfg.model == {"maxl": 1, "num_channels": 3}
    assert cfg.e0s == {"H": -1.5, "C": -2} and cfg.progress is False and cfg.tensorboard is True
    with pytest.raises(SystemExit):
        main(["train", "--schedule", "linear"])
