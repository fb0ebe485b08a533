"""The files a config names or holds, read only when they are safely inside the config directory.

The config is untrusted input: in a pull-request workflow whoever opens the pull request writes
it, and CI plans it on a runner that holds secrets, then posts the plan back. So a file is
resolved with every symlink followed and read only if it is a regular file inside the config
directory (resolved too), not larger than a limit; a path outside, an absolute path, a FIFO or a
device is a ConfigIssue, and that file is never opened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dunningops.errors import ConfigIssue

# A template body is an email: 1 MB is far more than any reminder needs.
MAX_BODY_BYTES = 1_000_000
# A YAML file of the config: the benchmarks' 10,000-object configs stay far below this.
MAX_YAML_BYTES = 10_000_000


class FileProblem(Exception):
    """Why a file cannot be used, in the user's words; ``line`` and ``column`` inside it when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message, self.line = message, line


def resolved(path: Path) -> Path:
    """``path`` with every symlink followed (the config directory resolved is what "inside" means)."""
    return Path(os.path.realpath(path))


def resolved_child(real_folder: Path, name: str) -> Path:
    """``resolved(real_folder / name)`` for a folder already resolved and a name of one component.

    The same path, found with one ``lstat`` instead of one per component of the path (the many
    files of a config share a few folders: resolving each in full was a tenth of a plan).
    """
    path = real_folder / name
    if name in ("", ".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        return resolved(path)
    try:
        if not stat.S_ISLNK(os.lstat(path).st_mode):
            return path  # every folder above is real, and this is no symlink: nothing to follow
    except OSError:
        pass  # missing or unreadable: realpath decides, as before
    return resolved(path)


def _subject(what: str, name: str) -> str:
    return f"{what} {name!r}" if what else "the file"


def _size(limit: int) -> str:
    return f"{limit // 1_000_000} MB" if limit % 1_000_000 == 0 else f"{limit:,} bytes"


def resolve_named(root: Path, folder: Path, name: str, what: str) -> Path:
    """The real path of the file ``name`` that a YAML file in ``folder`` names, if it is inside ``root``.

    Args:
        root: the config directory, resolved (``resolved``).
        folder: the folder of the YAML file naming it; a relative ``name`` is relative to it.
        name: the name as written in the YAML.
        what: how the message calls the file ("body file").

    Raises:
        FileProblem: an absolute path, a path or a symlink leading outside the config directory.
    """
    return resolve_in(root, resolved(folder), name, what)


def resolve_in(root: Path, real_folder: Path, name: str, what: str) -> Path:
    """``resolve_named`` for a folder already resolved (``resolved``), e.g. once for the many body
    files beside one YAML file."""
    if "\0" in name:
        raise FileProblem(f"{what} name {name!r} contains a NUL character")
    if os.path.isabs(name):
        raise FileProblem(
            f"{what} {name!r} is an absolute path: name a file inside the config directory, "
            "relative to the YAML file that names it"
        )
    written = Path(os.path.normpath(real_folder / name))
    real = resolved_child(written.parent, written.name) if written.parent == real_folder else resolved(written)
    if not written.is_relative_to(root):
        raise FileProblem(f"{what} {name!r} is outside the config directory")
    if not real.is_relative_to(root):
        raise FileProblem(f"{what} {name!r} is a symbolic link to a file outside the config directory")
    return real


def read_inside(root: Path, real: Path, limit: int, what: str, name: str) -> str:
    """The UTF-8 text of ``real`` (already resolved inside ``root``): a regular file of at most ``limit`` bytes.

    The file is examined with ``stat`` before it is opened, so a FIFO or a device is never opened
    (it could block, or never end); it is then opened without following symlinks and checked
    again on the open descriptor, so a file swapped meanwhile is not read either.

    Raises:
        FileNotFoundError: no such file.
        FileProblem: not inside ``root``, not a regular file, too large, not UTF-8.
    """
    if not real.is_relative_to(root):
        raise FileProblem(f"{_subject(what, name)} is outside the config directory")
    info = os.stat(real)
    _check(info, limit, what, name)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise FileProblem(f"cannot read {_subject(what, name)}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        _check(os.fstat(fh.fileno()), limit, what, name)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FileProblem(f"{_subject(what, name)} is larger than the {_size(limit)} limit")
    return decode_utf8(data)


def _check(info: os.stat_result, limit: int, what: str, name: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem(f"{_subject(what, name)} is not a regular file")
    if info.st_size > limit:
        raise FileProblem(f"{_subject(what, name)} is larger than the {_size(limit)} limit ({info.st_size:,} bytes)")


def decode_utf8(data: bytes) -> str:
    """``data`` as text; FileProblem naming the line and column of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start : exc.start].decode("utf-8", "replace")) + 1
        raise FileProblem(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column}): save the file as UTF-8", line
        ) from None


def read_named(root: Path, folder: Path, name: str, what: str, limit: int) -> str:
    """``resolve_named`` then ``read_inside``: the text of a file a YAML file names."""
    return read_inside(root, resolve_named(root, folder, name, what), limit, what, name)


def yaml_file_problem(root: Path, path: Path, rel: str, real: Path | None = None) -> ConfigIssue | None:
    """Why a YAML file found in the config directory cannot be read, if it cannot (a symlink leading
    outside, a FIFO or a device); None for a regular file inside. ``real``: ``resolved(path)``, if known."""
    try:
        real = real if real is not None else resolved(path)
        if not real.is_relative_to(root):
            return ConfigIssue(rel, None, "", "is a symbolic link to a file outside the config directory; it is not read")
        info = os.stat(real)
    except OSError as exc:
        return ConfigIssue(rel, None, "", f"cannot read: {exc.strerror}")
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        return ConfigIssue(rel, None, "", "is not a regular file; it is not read")
    return None
