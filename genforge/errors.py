"""Errors that are the user's to fix: the CLI prints them as one line, never a traceback."""

import errno
import os


class UserError(Exception):
    """A mistake in the user's input (a path, a file, an option). Exit code 1."""

    exit_code = 1


class ConfigError(UserError):
    """A configuration key or value that does not validate. Exit code 2."""

    exit_code = 2


class BadImageError(UserError):
    """A file that is not a readable image (corrupt, truncated, empty, too large)."""


class ImageTooLargeError(BadImageError):
    """An image over the pixel limit (checked from its header) or Pillow's decompression-bomb guard."""


class BadVideoError(UserError):
    """A file that is not a readable video (missing, corrupt, truncated, no video stream, no decoder)."""


class DiskError(UserError):
    """A file or folder that cannot be written: no space, read-only, no permission, a file where a
    folder should be. The user's to fix (free space, another path), not a bug."""

    # the OSError numbers that mean that; anything else keeps its traceback
    ERRNOS = frozenset({"ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EEXIST", "EISDIR",
                        "ENAMETOOLONG", "EFBIG", "EIO"})

    @classmethod
    def matches(cls, err: BaseException) -> bool:
        return isinstance(err, OSError) and errno.errorcode.get(err.errno or 0) in cls.ERRNOS

    @classmethod
    def from_os(cls, err: OSError, doing: str, *, name_file: bool = True) -> "DiskError":
        """`doing` says what failed, e.g. 'cannot write model folder out/x'; `name_file`: add the
        file the OS named (off where that is only a temporary name)."""
        reason = err.strerror or str(err)
        where = err.filename
        if isinstance(err, (FileExistsError, NotADirectoryError)) and where is not None:
            blocker = _file_in_the_way(os.fspath(where))
            if blocker:
                return cls(f"{doing}: {blocker} is a file, not a folder")
        return cls(f"{doing}: {reason}" + (f" ({os.fspath(where)})" if name_file and where is not None else ""))


def _file_in_the_way(path: str) -> str | None:
    """The path or nearest existing ancestor of `path` that is not a folder, if any."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path if path and not os.path.isdir(path) else None
