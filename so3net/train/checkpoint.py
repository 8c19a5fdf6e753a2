"""Checkpoint files: written atomically, verified before they are read, and a run folder checked
for writing before any training.

Integrity: ``torch.save`` writes a zip archive whose entries (the pickled structure and every
tensor's bytes) carry CRC-32 checksums computed when it was saved, but ``torch.load`` never checks
them, so a flipped byte in a tensor gave NaN metrics and exit status 0. :func:`load_checkpoint`
verifies every entry's CRC (and that the file is a complete zip archive) first and raises a
:class:`CheckpointError` naming the file and the damaged entry.

Writing: :func:`save_checkpoint` writes a temporary file in the same folder, flushes it to disk
and renames it over the target, so a failure (full or read-only disk, a kill) leaves the previous
file intact; the error names the path. :func:`check_writable` lets a run fail before its first
epoch instead of after it.
"""
from __future__ import annotations

import os
import tempfile
import zipfile

import torch

__all__ = ["CheckpointError", "RunFolderError", "save_checkpoint", "load_checkpoint", "verify_checkpoint",
           "check_writable", "check_resume_settings", "RESUME_MAY_CHANGE"]

#: settings a resumed run may change: its budget and how it runs, not what it learns from or how
RESUME_MAY_CHANGE = ("epochs", "time_limit", "progress", "threads", "device", "run_dir")

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CheckpointError(ValueError):
    """A checkpoint file is damaged or not a checkpoint; the message names the file."""


class RunFolderError(OSError):
    """A file of a run could not be written; the message names the path and the reason."""


def check_writable(folder: str) -> None:
    """Create ``folder`` if needed and check that files can be created in it."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".so3net-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise RunFolderError(err.errno, f"the run folder {folder} is not writable ({err.strerror or err}); "
                             "expected a folder where checkpoints and metrics can be written "
                             "(choose another --run-dir)") from None


def save_checkpoint(obj, path: str) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temporary file, fsync, rename); on any failure
    the temporary file is removed and the previous ``path`` stays as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)   # as open() would create it (mkstemp makes it private)
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        previous = "the previous file is unchanged" if os.path.exists(path) else "nothing was written"
        raise RunFolderError(err.errno, f"cannot write {path} ({err.strerror or err}); {previous}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def verify_checkpoint(path: str) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a complete zip archive whose every entry
    matches the CRC-32 recorded when it was saved."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()     # reads every entry; the name of the first that fails, or None
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint file") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path}: not a complete checkpoint ({type(err).__name__}: {err}); expected a "
                              "file saved by so3net (torch.save's zip format)") from None
    if bad is not None:
        raise CheckpointError(f"{path}: the checkpoint is damaged: its entry {bad!r} does not match the CRC-32 "
                              "recorded when it was saved; expected the file as so3net saved it (restore a copy "
                              "or train again)")


def load_checkpoint(path: str, map_location="cpu"):
    """The object saved in ``path``, after :func:`verify_checkpoint`."""
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a file we cannot use
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None


def _plain(value):
    """Lists as tuples, recursively (TOML gives lists, flags tuples: the same setting)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_resume_settings(path: str, saved: dict, current: dict) -> None:
    """Raise a ``ValueError`` listing every setting (``TrainConfig.to_dict()``) that differs between
    the checkpoint ``path`` and the current run, except :data:`RESUME_MAY_CHANGE`; model options
    are compared one by one."""
    saved, current = _plain(saved), _plain(current)
    differences = []
    for name in sorted(set(saved) | set(current)):
        if name in RESUME_MAY_CHANGE:
            continue
        old, new = saved.get(name, "(unset)"), current.get(name, "(unset)")
        if name == "model" and isinstance(old, dict) and isinstance(new, dict):
            differences += [f"model.{key}: {old.get(key, '(default)')!r} in the checkpoint, "
                            f"{new.get(key, '(default)')!r} now"
                            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        elif old != new:
            differences.append(f"{name}: {old!r} in the checkpoint, {new!r} now")
    if differences:
        raise ValueError(f"--resume: the checkpoint {path} was written with other settings:\n  "
                         + "\n  ".join(differences)
                         + f"\nexpected the same settings (only {', '.join(RESUME_MAY_CHANGE)} may change): "
                           "resume with the checkpoint's settings, or start a new run in another --run-dir")
