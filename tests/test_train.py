"""Training loop: configuration, the learning-rate schedule and time budget, the float64 energy
reference, and resume after a SIGKILL mid-epoch (bit for bit the result of an uninterrupted run).

Tiny Cormorant models on a few molecules of the shipped GFN2-xTB ethanol set keep every test fast.
"""
import csv
import json
import os
import multiprocessing
import signal
import time

import numpy as np
import pytest
import torch

from so3net.cli import main
from so3net.data import MolecularDataset, iterate_batches
from so3net.models import Cormorant
from so3net.train import Trainer, fit_energy_reference, load_config

from helpers import TINY, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TOML = """\
n_train = {n_train}
n_valid = 4
n_test = 4
epochs = {epochs}
batch_size = 4
[model]
num_cg_levels = 1
num_channels = 2
maxl = 1
max_sh = 1
readout_hidden = [8]
"""


def quiet(*_):
    pass


# ------------------------------------------------------------------ configuration
def test_toml_settings_model_table_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("lr_min = 1e-4\n" + TINY_TOML.format(n_train=12, epochs=3))
    cfg = load_config(str(path), epochs=5, seed=None)   # None overrides are ignored
    assert (cfg.n_train, cfg.epochs, cfg.seed, cfg.lr_min) == (12, 5, 0, 1e-4)
    assert cfg.model == {**TINY, "readout_hidden": [8]}


@pytest.mark.parametrize("text, words", [
    ("n_trian = 10\n", ["unknown settings", "'n_trian'", "n_train"]),
    ("epochs = 'ten'\n", ["'epochs'", "int", "'ten'"]),
    ("progress = 1\n", ["'progress'", "bool"]),
    ("lr = 0.0\n", ["lr > 0"]),
    ("time_limit = -5\n", ["time_limit", "positive"]),
    ("epochs = \n", ["not valid TOML"]),
])
def test_bad_settings_are_named(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_config(str(path))
    for word in words:
        assert word in str(info.value)


def test_unknown_model_option_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown Cormorant options \['num_chanels'\]"):
        Trainer(tiny_config(tmp_path, model={"num_chanels": 2}), log=quiet)


def test_benchmark_config_is_the_sgdml_split():
    """configs/ethanol_ccsd_t.toml: first 800 of default_rng(0).permutation(1000) train, last 200 test."""
    cfg = load_config(os.path.join(ROOT, "configs", "ethanol_ccsd_t.toml"))
    assert cfg.data == "../shared/data/ethanol_ccsd_t-train.npz" and cfg.time_limit == 3600
    assert cfg.energy_weight > 0 and cfg.force_weight > 0
    Cormorant(cfg.preset, **cfg.model)                     # the model options exist
    frames = MolecularDataset(np.zeros((1000, 3)), np.ones(1000), np.ones(1000), np.zeros(1000),
                              units={"energy": "kcal/mol", "length": "Angstrom"})
    split = frames.split(cfg.n_train, cfg.n_valid, cfg.n_test, cfg.seed)
    perm = np.random.default_rng(0).permutation(1000)
    assert len(split.valid) == 0
    np.testing.assert_array_equal(split.train.ids, perm[:800])
    np.testing.assert_array_equal(split.test.ids, perm[800:])


# ------------------------------------------------------------------ schedule and budget
def test_cosine_schedule_by_steps(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, lr=1e-2, lr_min=1e-4), log=quiet)
    lrs = [trainer.learning_rate(p) for p in np.linspace(0, 1, 11)]
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-4)
    assert lrs[5] == pytest.approx((1e-2 + 1e-4) / 2)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    trainer.fit()
    assert trainer.steps == trainer.total_steps == 2 * 3     # 12 molecules in batches of 4, 2 epochs
    # the last step ran at progress 5/6, and each epoch's row reports the rate of its last step
    assert trainer.history[-1]["lr"] == pytest.approx(trainer.learning_rate(5 / 6))
    assert trainer.history[0]["lr"] == pytest.approx(trainer.learning_rate(2 / 6))


def test_time_limit_anneals_on_time_and_stops_mid_epoch(tmp_path):
    """With a budget of 2 s and a clock that reads 0.25 s per step taken, the run must stop after
    exactly 8 steps (mid-epoch 3 of 10 000), each step at the rate of its time progress."""
    trainer = Trainer(tiny_config(tmp_path, epochs=10_000, time_limit=2.0), log=quiet)
    trainer.elapsed = lambda: 0.25 * trainer.steps
    result = trainer.fit()
    assert trainer.out_of_time and trainer.steps == 8 and trainer.epoch == 3
    assert [row["epoch"] for row in trainer.history] == [1, 2, 3]
    for row, last_step in zip(trainer.history, (2, 5, 7)):
        assert row["lr"] == pytest.approx(trainer.learning_rate(last_step / 8))
    assert trainer.history[-1]["lr"] < 0.06 * trainer.cfg.lr           # annealed, not cut off at epoch 3
    assert result["test"]["n_molecules"] == 4 and os.path.exists(tmp_path / "run" / "metrics.json")


def test_time_limit_on_the_real_clock(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=10_000, time_limit=1.0, n_valid=0), log=quiet)
    trainer.fit()
    assert trainer.out_of_time and 0 < trainer.steps < trainer.total_steps
    assert trainer.elapsed() >= 1.0


# ------------------------------------------------------------------ the loss
def test_energy_and_force_loss_gradients_match_finite_differences(tmp_path):
    """The force term needs second derivatives (forces = -dE/dr built with create_graph)."""
    trainer = Trainer(tiny_config(tmp_path, n_train=4, dtype="float64", energy_weight=0.3), log=quiet)
    batch = next(iterate_batches(trainer.split.train, 4, dtype=torch.float64))
    loss = lambda: trainer.loss(batch, (batch.n_molecules, batch.positions.shape[0]))
    params = list(trainer.potential.model.parameters())
    grads = torch.autograd.grad(loss(), params)
    generator = torch.Generator().manual_seed(0)
    for p, g in zip(params, grads):
        direction = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        with torch.no_grad():
            p.add_(1e-6 * direction)
            up = float(loss())
            p.sub_(2e-6 * direction)
            down = float(loss())
            p.add_(1e-6 * direction)
        assert float((g * direction).sum()) == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


# ------------------------------------------------------------------ energy reference
def test_reference_fit_recovers_linear_composition_energies():
    rng = np.random.default_rng(1)
    species = (1, 6, 8)
    molecules, ref = [], np.array([-13.6, -1030.0, -2040.0])
    for i in range(12):
        z = rng.choice(species, size=int(rng.integers(2, 7)))
        molecules.append((rng.normal(size=(len(z), 3)), z, float(sum(ref[species.index(a)] for a in z))))
    data = MolecularDataset(np.concatenate([m[0] for m in molecules]), np.concatenate([m[1] for m in molecules]),
                            [len(m[1]) for m in molecules], [m[2] for m in molecules],
                            units={"energy": "eV", "length": "Angstrom"})
    np.testing.assert_allclose(fit_energy_reference(data, species), ref, rtol=1e-10)
    with pytest.raises(ValueError, match=r"elements \[8\]"):
        fit_energy_reference(data, (1, 6))


def test_potential_adds_reference_in_float64(tmp_path):
    """Ethanol's total energy is ~ -97 000 kcal/mol; the float32 network only carries the residual."""
    trainer = Trainer(tiny_config(tmp_path), log=quiet)
    pot = trainer.potential
    pot.reference.fill_(-1e5 / 9)
    data = trainer.split.train
    pos = torch.as_tensor(np.array(data.positions[:9]), dtype=torch.float32)
    species, batch = torch.as_tensor(np.array(data.species[:9])), torch.zeros(9, dtype=torch.long)
    total, forces = pot.energy_and_forces(pos, species, batch, create_graph=False)
    total, residual = total.detach(), pot.model(pos, species, batch).detach()
    reference = pot.reference_energy(species, batch, 1)
    assert total.dtype == reference.dtype == torch.float64 and forces.dtype == torch.float32
    assert float(reference[0]) == pytest.approx(-1e5, rel=1e-14)
    # float32 would round -1e5 + residual to steps of 0.008; float64 keeps the residual's digits
    assert abs(float(total[0] - reference[0]) - float(residual[0])) < 1e-9


# ------------------------------------------------------------------ resume after a kill
def _train_until_killed(argv, ready):
    """Forked child: ``so3net train``; after the first step of epoch 2 it reports and waits to be killed.
    One thread (set by conftest.py before the fork): OpenMP's pool does not survive ``fork``."""
    step = Trainer.step

    def step_then_wait(self, batch):
        value = step(self, batch)
        if self.epoch == 1:                # epochs count from 0: this is epoch 2, mid-way
            ready.set()
            time.sleep(600)
        return value

    Trainer.step = step_then_wait
    main(argv)


def _rows(path):
    with open(path) as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.mark.slow
def test_resume_after_kill_mid_epoch_matches_uninterrupted_run(tmp_path, capsys):
    """Parent and forked child both run on one thread (conftest.py), so bit-for-bit equality is expected."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML.format(n_train=16, epochs=3))
    killed, straight = str(tmp_path / "killed"), str(tmp_path / "straight")
    argv = ["train", "--config", str(config), "--no-progress", "--run-dir"]
    assert main(argv + [straight]) == 0          # uninterrupted; also loads what the child inherits

    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_train_until_killed, args=(argv + [killed], ready))
    child.start()
    try:
        assert ready.wait(120), f"the run did not reach epoch 2 (exit code {child.exitcode})"
    finally:
        child.kill()                             # SIGKILL: no handler, no cleanup
        child.join()
    assert child.exitcode == -signal.SIGKILL
    state = torch.load(os.path.join(killed, "checkpoint.pt"), weights_only=False)
    assert state["epoch"] == 1 and state["steps"] == 4      # epoch 1's checkpoint; epoch 2's step 5 was lost
    assert not os.path.exists(os.path.join(killed, "metrics.json"))

    assert main(argv + [killed, "--resume"]) == 0
    capsys.readouterr()
    resumed = torch.load(os.path.join(killed, "checkpoint.pt"), weights_only=False)
    reference = torch.load(os.path.join(straight, "checkpoint.pt"), weights_only=False)
    assert resumed["epoch"] == reference["epoch"] == 3 and resumed["steps"] == reference["steps"] == 12
    for name, value in reference["potential"]["model_state"].items():   # bit for bit
        assert torch.equal(resumed["potential"]["model_state"][name], value), name
    for name, value in reference["optimizer"]["state"].items():
        assert all(torch.equal(resumed["optimizer"]["state"][name][k], v) for k, v in value.items())
    assert _rows(os.path.join(killed, "metrics.csv")) == _rows(os.path.join(straight, "metrics.csv"))
    with open(os.path.join(killed, "metrics.json")) as a, open(os.path.join(straight, "metrics.json")) as b:
        assert json.load(a)["test"] == json.load(b)["test"]
    assert resumed["elapsed"] > state["elapsed"]            # the time budget counts both sessions
