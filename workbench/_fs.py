"""Folders and files only we own: created with tight modes, owner checked, never through a symlink."""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from pathlib import Path

from workbench._errors import StackError

PRIVATE = 0o700
# A folder an unprivileged server user (PostgreSQL as `nobody`) must walk through: it may
# traverse, but neither list nor write.
TRAVERSABLE = 0o711


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def private_dir(path: Path, *, mode: int = PRIVATE) -> Path:
    """path as a folder of ours (created with mode if missing); StackError if a symlink or someone else's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    check_ours(path, kind="folder")
    if stat.S_IMODE(os.lstat(path).st_mode) != mode:
        os.chmod(path, mode, follow_symlinks=False)
    return path


def check_ours(path: Path, *, kind: str = "folder") -> os.stat_result:
    """lstat of path; StackError naming it when it is a symlink, of another kind, or not ours."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise StackError(
            f"{path} is a symbolic link (to {os.readlink(path)}); the workbench only uses a {kind} "
            "it created itself. Remove the link, or set WORKBENCH_STACK_DIR to another folder"
        )
    wanted = stat.S_ISDIR if kind == "folder" else stat.S_ISREG
    if not wanted(st.st_mode):
        raise StackError(f"{path} is not a {kind}; remove it or set WORKBENCH_STACK_DIR")
    if st.st_uid != os.geteuid():
        raise StackError(
            f"{path} belongs to {_owner(st.st_uid)}, not to {_owner(os.geteuid())} who runs the "
            f"workbench; another user may have created it to take it over. Check and remove it "
            "(or set WORKBENCH_STACK_DIR to a folder of yours)"
        )
    return st


def open_append(path: Path, *, mode: int = 0o600) -> int:
    """A file descriptor appending to path (created with mode), refusing symlinks and others' files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise StackError(f"{path} belongs to {_owner(st.st_uid)} or is not a file; remove it")
    return fd


def write_private(path: Path, data: str, *, mode: int = 0o600) -> Path:
    """Write path atomically (a fresh temporary file, then rename) with mode; no symlink followed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(data)
    os.replace(tmp, path)
    return path


def read_private(path: Path, *, secret: bool = True) -> str:
    """Text of a file of ours (not a symlink, owned by us; if secret, readable by us alone)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd) as src:
        st = os.fstat(src.fileno())
        if st.st_uid != os.geteuid() or (secret and st.st_mode & 0o077):
            raise StackError(
                f"{path} belongs to {_owner(st.st_uid)} or is readable by others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); remove it and start again"
            )
        return src.read()
