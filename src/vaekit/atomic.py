"""Writing files and folders so that a crash, a kill or a concurrent reader never sees half of one.

- `atomic_write_bytes(path, data)`: a temporary sibling, fsync, one rename.
- `atomic_dir(folder)`: a temporary sibling folder, filled, then swapped with `folder` in one
  step (Linux renameat2 RENAME_EXCHANGE), so `folder` is complete at every instant; elsewhere two
  renames, and a crash between them is repaired by the next writer.
- Temporaries are named `.NAME.vaekit-tmp-PID-...`: what a dead process left is removed (or, for a
  folder caught between its two renames, put back) the next time NAME is written.
- `folder_lock(folder)`: one writer per run folder; a second one is refused with a sentence.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

TMP_TAG = ".vaekit-tmp-"
LOCK_NAME = ".vaekit.lock"
_OLD = "old"  # suffix of the previous folder during a two-rename replacement


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: setting it later would race with other threads' files


def _umask() -> int:
    return _UMASK


def _prefix(name: str) -> str:
    return f".{name}{TMP_TAG}{os.getpid()}-"


def is_temporary(name: str) -> bool:
    """True for the name of a vaekit temporary (a file or folder being written)."""
    return name.startswith(".") and TMP_TAG in name


def _owner_alive(entry: str) -> bool:
    """Whether the process that named this temporary still runs."""
    try:
        pid = int(entry.split(TMP_TAG, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_debris(parent: Path, name: str) -> None:
    """Remove the temporaries of `parent / name` that dead processes left; a complete previous
    folder left between two renames is put back where `name` is missing."""
    parent = Path(parent)
    try:
        entries = [e for e in os.listdir(parent) if e.startswith(f".{name}{TMP_TAG}")]
    except OSError:
        return
    for entry in entries:
        if _owner_alive(entry):
            continue
        path = parent / entry
        if entry.rsplit("-", 1)[-1] == _OLD and not (parent / name).exists():  # mkdtemp's suffixes have no "-"
            try:
                os.replace(path, parent / name)
                continue
            except OSError:
                pass
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def remove_all_debris(folder: Path) -> None:
    """remove_debris for every name in `folder` that has temporaries (a run folder on resume)."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    names = {e[1:].split(TMP_TAG, 1)[0] for e in entries if is_temporary(e)}
    for name in names:
        remove_debris(Path(folder), name)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_tree(folder: Path) -> None:
    """Flush a folder's files and the folder itself to disk."""
    for path in folder.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(folder):
    """Yield a temporary folder beside `folder`; on success it replaces `folder` as one step."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(folder.parent, folder.name)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(folder.name), dir=folder.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a saved model is an ordinary folder
    try:
        yield tmp
        _fsync_tree(tmp)
        _put_in_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(folder.parent)


def _put_in_place(tmp: Path, folder: Path) -> None:
    """Make `tmp` be `folder`: a rename where there is none, else an atomic exchange (or two renames)."""
    for _ in range(100):  # only concurrent writers of the same folder loop
        if not folder.exists():
            try:
                os.rename(tmp, folder)
                return
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                continue  # another writer put its folder there first: exchange with it
        if folder.is_symlink() or not folder.is_dir():
            raise InputError(f"{folder} exists and is not a folder; remove it or choose another name.")
        try:
            swapped = _exchange(tmp, folder)
        except FileNotFoundError:  # the folder went away since exists(): start again
            continue
        if swapped:
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous folder
            return
        old = folder.with_name(_prefix(folder.name) + _OLD)
        try:
            os.rename(folder, old)
        except FileNotFoundError:
            continue
        os.rename(tmp, folder)  # a crash just before this is repaired by remove_debris
        shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, "too many concurrent writers", str(folder))


def atomic_write_bytes(path, data: bytes) -> None:
    """Write a file through a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_ordinary_permissions(path) -> None:
    """rw for everyone the umask allows (libraries that create files private call this after)."""
    os.chmod(path, 0o666 & ~_umask())


@contextmanager
def folder_lock(folder, what: str = "a training run"):
    """Hold the one writer's lock of `folder` (created if missing) for the block."""
    folder = Path(folder)
    try:
        import fcntl
    except ImportError:  # no advisory locks on this system
        yield
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError as e:
        raise InputError(f"Cannot create the run folder {folder} ({e.strerror}); choose another --out.") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{folder} is being written by another vaekit process ({what}); wait for it to "
                             "finish or choose another --out.") from None
        except OSError:  # no locks on this file system (some NFS): carry on unlocked
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock
