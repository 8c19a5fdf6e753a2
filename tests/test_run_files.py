"""The files of a run: a damaged checkpoint is refused naming the file (a flipped byte in a tensor
gave NaN metrics and exit status 0), ``--resume`` refuses a checkpoint written with other
settings (another seed silently gave another test set), and a run folder that cannot be written
fails before training, naming the path. A refused run leaves every file already written as it was."""
import errno
import os
import shutil
import struct
import zipfile

import pytest
import torch

from so3net.cli import main
from so3net.train import Potential, TrainConfig, Trainer
from so3net.train import checkpoint as ckpt

TINY = {"num_cg_levels": 1, "num_channels": 2, "maxl": 1, "max_sh": 1, "readout_hidden": (8,)}
FLAGS = ["--n-train", "8", "--n-valid", "4", "--n-test", "4", "--epochs", "2", "--batch-size", "4", "--no-progress",
         "--model", "num_cg_levels=1", "--model", "num_channels=2", "--model", "maxl=1", "--model", "max_sh=1",
         "--model", "readout_hidden=[8]"]


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--run-dir", str(run_dir), *FLAGS]) == 0
    return run_dir


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def flip_a_tensor_byte(src, dst):
    """Copy ``src`` to ``dst`` with one byte of the first tensor's data flipped."""
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 8)
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)   # the local header's
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + 5] ^= 0x20
    dst.write_bytes(bytes(raw))


# ------------------------------------------------------------------ damaged checkpoints
def test_a_flipped_byte_in_a_tensor_is_refused_naming_the_file(run, tmp_path, capsys):
    bad = tmp_path / "best_model.pt"
    flip_a_tensor_byte(run / "best_model.pt", bad)
    with pytest.raises(ckpt.CheckpointError, match=rf"{bad}: the checkpoint is damaged: its entry '.*/data/\d+'"):
        Potential.load(str(bad))
    assert main(["evaluate", str(bad), "ethanol_gfn2xtb"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "CRC-32" in err


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_truncated_checkpoint_is_refused_naming_the_file(run, tmp_path, cut):
    bad = tmp_path / "checkpoint.pt"
    data = (run / "checkpoint.pt").read_bytes()
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ckpt.CheckpointError, match=rf"{bad}: not a complete checkpoint"):
        Potential.load(str(bad))


def test_resume_from_a_damaged_checkpoint_is_refused_and_changes_nothing(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    flip_a_tensor_byte(run / "checkpoint.pt", copy / "checkpoint.pt")
    before = snapshot(copy)
    assert main(["train", "--run-dir", str(copy), *FLAGS, "--epochs", "3", "--resume"]) == 2
    assert f"{copy / 'checkpoint.pt'}: the checkpoint is damaged" in capsys.readouterr().err
    assert snapshot(copy) == before


def test_saving_is_atomic_and_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    ckpt.save_checkpoint({"x": torch.arange(3)}, str(path))
    good = path.read_bytes()

    def full_disk(obj, fh):
        fh.write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(ckpt.RunFolderError, match=rf"cannot write {path} \(No space left on device\); "
                                                  "the previous file is unchanged"):
        ckpt.save_checkpoint({"x": torch.arange(4)}, str(path))
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["state.pt"]


# ------------------------------------------------------------------ resume with other settings
@pytest.mark.parametrize("change, words", [
    (["--seed", "1"], ["seed: 0 in the checkpoint, 1 now"]),
    (["--model", "num_channels=3"], ["model.num_channels: 2 in the checkpoint, 3 now"]),
    (["--lr", "0.001", "--n-train", "12"], ["lr: 0.005 in the checkpoint, 0.001 now", "n_train: 8 in the checkpoint, 12 now"]),
])
def test_resume_with_other_settings_is_refused_listing_them(run, tmp_path, capsys, change, words):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = snapshot(copy)
    assert main(["train", "--run-dir", str(copy), *FLAGS, *change, "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{copy / 'checkpoint.pt'}" in err and "other settings" in err
    for word in words:
        assert word in err
    assert snapshot(copy) == before


def test_resume_may_extend_the_budget(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["train", "--run-dir", str(copy), *FLAGS, "--epochs", "3", "--time-limit", "600", "--resume"]) == 0
    assert ckpt.load_checkpoint(str(copy / "checkpoint.pt"))["epoch"] == 3


# ------------------------------------------------------------------ run folders that cannot be written
def _refuse_writes_in(monkeypatch, folder):
    real = ckpt.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and os.path.abspath(dir) == os.path.abspath(folder):
            raise PermissionError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(ckpt.tempfile, "mkstemp", mkstemp)


def test_an_unwritable_run_folder_fails_before_training(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "frozen"
    folder.mkdir()
    (folder / "notes.txt").write_text("kept")
    _refuse_writes_in(monkeypatch, folder)
    trainer = Trainer(TrainConfig(n_train=8, n_valid=4, n_test=4, epochs=1, batch_size=4, run_dir=str(folder),
                                  progress=False, model=dict(TINY)), log=quiet)
    with pytest.raises(ckpt.RunFolderError, match=rf"the run folder {folder} is not writable \(Read-only file system\)"):
        trainer.fit()
    assert trainer.steps == 0 and snapshot(folder) == {"notes.txt": b"kept"}
    assert main(["train", "--run-dir", str(folder), *FLAGS]) == 2
    assert f"the run folder {folder} is not writable" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: the permission cannot be "
                    "observed (test_an_unwritable_run_folder_fails_before_training covers the error path)")
def test_a_read_only_run_folder_fails_before_training(tmp_path, capsys):
    folder = tmp_path / "frozen"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["train", "--run-dir", str(folder), *FLAGS]) == 2
    finally:
        folder.chmod(0o755)
    assert f"the run folder {folder} is not writable" in capsys.readouterr().err


def test_a_folder_that_turns_read_only_mid_run_names_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    real = ckpt.tempfile.mkstemp

    def log(line):
        if line.startswith("epoch 1:"):       # epoch 1 is saved; from now on the folder refuses writes
            _refuse_writes_in(monkeypatch, folder)

    trainer = Trainer(TrainConfig(n_train=8, n_valid=4, n_test=4, epochs=2, batch_size=4, run_dir=str(folder),
                                  progress=False, model=dict(TINY)), log=log)
    with pytest.raises(ckpt.RunFolderError, match=rf"cannot write {folder}/\w+\.pt \(Read-only file system\); "
                                                  "the previous file is unchanged"):
        trainer.fit()
    monkeypatch.setattr(ckpt.tempfile, "mkstemp", real)
    assert trainer.epoch == 2 and ckpt.load_checkpoint(str(folder / "checkpoint.pt"))["epoch"] == 1
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_saved_files_get_the_usual_permissions(tmp_path):
    path = tmp_path / "state.pt"
    ckpt.save_checkpoint({"x": 1}, str(path))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
