"""Errors that are the user's to fix: the CLI prints them as one line, never a traceback."""


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
