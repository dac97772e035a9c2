"""A run folder's ``backup/``: the ``BackupAndRestore`` callback that writes it, what :func:`training.fit` reads of it.

:class:`BackupAndRestore` is Keras' with atomic writes and mid-epoch resumes on schedule; :func:`_backup_epoch`
says where a backup resumes (before ``fit`` builds its callbacks), :func:`_clear_previous_run` clears a finished
run's results for a fresh one. The callback and :func:`_backup_epoch` parse the metadata file through one
reader, :func:`_read_metadata`.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import keras

from zoo.files import replace_durably

__all__ = ["BackupAndRestore"]


def _read_metadata(path) -> int:
    """The ``epoch`` of the backup metadata file ``path``.

    ValueError when it is no JSON object with an integer ``epoch`` (``true`` counts as one, as Keras reads it; the
    message names what was there), OSError when it cannot be read.
    """
    meta = json.loads(Path(path).read_text())
    if not isinstance(meta, dict) or not isinstance(meta.get("epoch"), int):
        raise ValueError(f"expected a JSON object with an integer 'epoch', got {meta!r:.80}")
    return meta["epoch"]


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore``, with a mid-epoch backup resumed on the uninterrupted run's schedule.

    Keras resumes a backup made every N batches at the *start* of its epoch, but with the optimizer's
    step count of the backup, so the run took the epoch's batches before the backup twice *and*
    counted them twice: it ended ``N`` steps past ``epochs x steps_per_epoch``, the last ones at the
    schedule's final LR (0 for poly/cosine) and every step milestone ``N`` steps early. Here the step
    count is set back to that epoch's first step: those batches are still trained again (their
    updates stay in the weights), but the LR schedule and the run's length are the uninterrupted
    run's. A backup made at an epoch's end (``save_freq="epoch"``) resumes exactly as it was.

    Each backup file is written to a temporary name and renamed into place (weights first, then the metadata
    naming their epoch): Keras truncates and rewrites both in place, so a run killed while it saved left an empty
    ``training_metadata.json`` (or half an HDF5 file), and the next start failed with a ``JSONDecodeError`` instead
    of resuming. A metadata file that does not parse (an older backup's) falls back to the previous backup, as Keras
    already does for unreadable weights.
    """

    def _save_model(self):
        backup = Path(self.backup_dir)
        backup.mkdir(parents=True, exist_ok=True)
        weights, meta = Path(self._weights_path), Path(self._training_metadata_path)
        if self.double_checkpoint:  # the previous pair, for Keras' fallback (copies of complete files)
            for path, previous in ((weights, self._prev_weights_path), (meta, self._prev_training_metadata_path)):
                if path.exists():
                    shutil.copyfile(path, previous)
        tmp_weights = backup / f".{os.getpid()}.tmp.{weights.name}"  # save_weights wants its .weights.h5 suffix
        tmp_meta = backup / f".{os.getpid()}.tmp.{meta.name}"
        try:
            self.model.save_weights(str(tmp_weights), overwrite=True)
            tmp_meta.write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
            replace_durably(tmp_weights, weights)
            replace_durably(tmp_meta, meta)
        finally:
            for tmp in (tmp_weights, tmp_meta):
                if tmp.exists():
                    tmp.unlink()

    def _load_model(self):
        meta = Path(self._training_metadata_path)
        if meta.exists():
            try:
                _read_metadata(meta)
            except ValueError as e:  # Keras' on_train_begin falls back to the previous backup on an OSError only
                raise OSError(f"backup metadata '{self._training_metadata_path}' is unreadable ({e})") from e
        with warnings.catch_warnings(record=True) as caught:  # a warning per object that does not fit, then the error
            warnings.simplefilter("always")
            try:
                super()._load_model()
            except ValueError as e:  # Keras': "A total of 94 objects could not be loaded ... variable.shape=..."
                first = str(e).strip().splitlines()[0].split(". Example")[0].rstrip(".")
                raise ValueError(f"the backup in '{self.backup_dir}' is of another model than this run's ({first}); "
                                 f"give another output folder (--out), or remove '{self.backup_dir}' to start afresh "
                                 f"there") from None
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        steps = (self.params or {}).get("steps")
        epoch = getattr(self.model, "_initial_epoch", None)
        opt = getattr(self.model, "optimizer", None)
        if not steps or epoch is None or opt is None:
            return
        start = int(epoch) * int(steps)
        # also below the epoch: an optimizer of another kind than the backup's restarts at step 0 (Keras skips its
        # variables with a warning), which restarted the warm-up and the schedule mid-run
        if int(keras.ops.convert_to_numpy(opt.iterations)) < start + int(steps):
            opt.iterations.assign(start)


_RUN_RESULTS = ("best.keras", "best.keras.json", "final.keras", "summary.json")


def _clear_previous_run(folder, log):
    """A fresh run in a finished run's folder: remove that run's results first.

    Otherwise ``BestCheckpoint`` would keep the old run's best value (and ``best.keras``) and the
    folder would mix two runs. A killed run resumes instead (its ``backup/`` is kept).
    """
    old = [name for name in _RUN_RESULTS if (folder / name).exists()]
    if old:
        log(f"{folder} holds a previous run's {', '.join(old)}: a fresh run (no backup/ to resume) replaces them")
        for name in old:
            (folder / name).unlink()


def _backup_epoch(folder: Path, log) -> int | None:
    """The epoch a backup in ``folder`` resumes at (:class:`BackupAndRestore`'s metadata), ``None`` without one.

    An unreadable metadata file (cut while Keras rewrote it in place, before backups were renamed into place)
    gives the previous backup's epoch, which :class:`BackupAndRestore` then restores; with no readable previous one
    it is a ValueError naming the folder (the run's other files are left as they are).
    """
    meta = folder / "training_metadata.json"
    if not meta.exists():
        return None
    for path in (meta, Path(f"{meta}.bkp")):
        try:
            epoch = _read_metadata(path)
        except (OSError, ValueError):
            continue
        if not isinstance(epoch, bool):  # unlike Keras, no ``true`` epoch: it falls back (as it always has here)
            if path != meta:
                log(f"backup metadata {meta} is unreadable: resuming from the backup before it")
            return epoch
    raise ValueError(f"the backup in '{folder}' cannot be read ('{meta.name}' is not the JSON a backup writes, and "
                     f"there is no readable backup before it); remove that folder to start the run afresh")
