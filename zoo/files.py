"""Durable files: writes that a crash or power cut never leave half done, locks between processes, hashes.

Used across the project (the weights cache, training's checkpoints and logs, converted models): write to
:func:`atomic_target`, then :func:`replace_durably` onto the real name, so readers see the old file or the
whole new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_target", "replace_durably", "replace_folder_durably", "make_parents", "remove_empty",
           "file_lock", "sha256sum", "check_folder", "check_file_target", "writable_folder_error"]


@contextlib.contextmanager
def file_lock(path: Path, *, lock_path: Path | None = None, patient: bool = False):
    """Hold an exclusive lock on ``<path>.lock`` (between processes and threads) while the block runs.

    For read-modify-write of small shared files (the recorded hashes), which two first uses of
    the cache at once would otherwise interleave, losing one writer's entry.

    Args:
        lock_path: the lock file to use instead of ``<path>.lock``.
        patient: wait as long as it takes also on Windows, where ``msvcrt``'s blocking lock gives up
            after ~10 s (too short for a download); POSIX ``flock`` always waits.
    """
    lock = Path(lock_path) if lock_path is not None else Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as f:
        if os.name == "nt":
            import msvcrt
            import time

            f.seek(0)
            while True:
                try:  # LK_LOCK retries for ~10 s, then raises OSError
                    msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK if patient else msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    if not patient:
                        raise
                    time.sleep(0.5)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if os.name == "nt":
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class FolderInUse(OSError):
    """Another process holds the folder (:func:`hold_folder`)."""


def hold_folder(path: Path):
    """An exclusive, non-blocking lock on the folder ``path`` itself (``flock`` on its descriptor: no lock file
    left in it), held until the returned descriptor is closed (``os.close``), or by the process until it ends.

    Returns the descriptor, or ``None`` where no lock is taken: Windows (no ``flock``), or a file system that has
    no locks (some network mounts: running unlocked beats refusing to run). Raises :class:`FolderInUse` when
    another process holds it."""
    if os.name == "nt":
        return None
    import errno
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FolderInUse(e.errno, "in use by another process", str(path)) from None
        return None
    return fd


def check_folder(path, who: str, why: str) -> None:
    """Refuse, before any work, a folder ``path`` that cannot be made because it, or a folder above it, is a file
    (``mkdir`` said only "[Errno 17] File exists" when the outputs were written). A ValueError naming both."""
    from kerazoo.cli import blocked_by_file  # the command line's own check (stdlib only: no Keras)

    path = Path(path)
    blocker = path if path.exists() and not path.is_dir() else blocked_by_file(path)
    if blocker is not None:
        raise ValueError(f"{who}: out_dir '{path}': '{blocker}' is a file, expected a folder ({why}).")


def check_file_target(path, who: str) -> None:
    """Refuse, before any work, a file ``path`` that cannot be written: a folder of that name, or a file where a
    folder above it should be (the OS said "[Errno 17] File exists" or named the temporary file). A ValueError."""
    from kerazoo.cli import blocked_by_file  # the command line's own check (stdlib only: no Keras)

    path = Path(path)
    blocker = blocked_by_file(path)
    if blocker is not None:
        raise ValueError(f"{who}: cannot write '{path}': '{blocker}' is a file, expected a folder.")
    if path.is_dir():
        raise ValueError(f"{who}: '{path}' is a folder; expected a file name.")


def writable_folder_error(path: Path, error: OSError) -> OSError:
    """``error`` (from making a temporary file beside ``path``) as the same OSError type whose ``filename`` is
    ``path`` instead of the temporary name: "[Errno 13] Permission denied (folder '/sys'): '/sys/m.h5'". A folder
    that is a symbolic link to nothing is said so (the OS said "File exists")."""
    path = Path(path)
    for folder in (path.parent, *path.parent.parents):
        if folder.is_symlink() and not folder.exists():
            return type(error)(error.errno, f"'{folder}' is a symbolic link to '{os.readlink(folder)}', which does "
                                            f"not exist", str(path))
    return type(error)(error.errno, f"{error.strerror or error} (folder '{path.parent}')", str(path))


def short_name(name: str, limit: int = 96) -> str:
    """``name`` cut to at most ``limit`` bytes of UTF-8 (whole characters), for a temporary file named after it: a
    legal name of 243 bytes plus ``.XXXXXXXX.tmp`` passed the file system's 255 ("File name too long")."""
    data = name.encode("utf-8", "surrogateescape")
    return name if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def atomic_target(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty temporary file beside ``path`` (same folder, so ``os.replace`` is atomic), named to end in
    ``suffix`` (a writer that picks its format by name needs the real one: ``".tmp.mp4"``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{short_name(path.name)}.", suffix=suffix, dir=path.parent)
    except OSError as e:  # named the temporary file ('/sys/.m.h5.5v9ijmbd.tmp'), or only "File exists"
        raise writable_folder_error(path, e) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets the usual permissions
    return Path(tmp)


def replace_durably(tmp, path) -> None:
    """``os.replace(tmp, path)`` once ``tmp``'s bytes are on the disk, then the folder's new entry (POSIX).

    A rename can reach the disk before the data it points to: after a power cut, ``path`` could be an empty
    or partly written file. With the data synced first it is the old file or the whole new one. Costs one
    ``fsync`` of the file (its data is written now rather than a few seconds later) and one of the folder.
    """
    # Windows' fsync (_commit) needs a handle open for writing; POSIX syncs through any descriptor
    fd = os.open(tmp, (os.O_RDWR | getattr(os, "O_BINARY", 0)) if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _sync_parent(path)


def _sync_parent(path) -> None:
    """fsyncs the folder holding ``path`` (POSIX), so a rename into it reaches the disk."""
    if os.name == "nt":  # no folder handles to sync; NTFS journals the rename
        return
    try:
        fd = os.open(Path(path).absolute().parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system that cannot sync a folder (EINVAL): the file's own data is already safe
        pass
    finally:
        os.close(fd)


def replace_folder_durably(tmp: Path, path: Path) -> None:
    """Moves the finished folder ``tmp`` to ``path`` once every file in it is on the disk; an old ``path`` is
    moved aside first and removed after, so ``path`` is at every moment the old folder, nothing (between two
    renames), or the whole new one (a folder cannot be renamed over another on every system)."""
    if os.name != "nt":  # the files' data first, so the rename cannot reach the disk before it
        for root, _, files in os.walk(tmp):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    old = None
    if path.exists() or path.is_symlink():  # a folder cannot be renamed over a link (ENOTDIR): the link goes aside
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        os.replace(path, old / "artifact")
    os.replace(tmp, path)
    _sync_parent(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def make_parents(folder: Path) -> list:
    """Makes ``folder`` and its missing parents; returns those it made, deepest first, for
    :func:`remove_empty` (a refused write then leaves no empty folders behind)."""
    missing = []
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    if missing:
        missing[0].mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty(folders) -> None:
    """Removes the folders :func:`make_parents` made, deepest first, while they are empty (one that holds something
    now, another writer's, stops it)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def write_errors_naming(path, tmp):
    """An OSError in the block that names ``tmp`` (or no file: "[Errno 27] File too large", "[Errno 28] No space
    left on device") re-raised naming ``path``, the file the user asked for; one naming another file passes."""
    try:
        yield
    except OSError as e:
        if e.filename is not None and str(e.filename) != str(tmp):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def write_text(path, text: str) -> Path:
    """``text`` (UTF-8) at ``path``, durably: written beside it, synced, renamed (:func:`replace_durably`); a
    failure leaves the old file and no temporary one, and its OSError names ``path`` (a full disk or a file-size
    limit said "[Errno 27] File too large" and no file). Returns ``path``."""
    path = Path(path)
    tmp = atomic_target(path)
    try:
        with write_errors_naming(path, tmp):
            tmp.write_text(text, encoding="utf-8", newline="")  # the bytes given: no \r\r\n from a CSV on Windows
            replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path, data, *, indent=2, default=None) -> None:
    """``data`` as JSON at ``path``, durably (:func:`write_text`)."""
    write_text(path, json.dumps(data, indent=indent, default=default) + "\n")


def sha256sum(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (weights files run to hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
