"""Owner-only folders and files: the home holds every tenant's problems and answers.

What qhopper creates (the home, the intake database and SQLite's -wal and -shm beside it,
artifacts, results, logs, reports) is readable by its owner only, folders 0700 and files
0600, whatever the umask: on a shared machine another account must not read them. SQLite
gives its -wal and -shm files the database file's mode, so creating that file owner-only
covers them. A folder that exists already keeps its mode: a home of ``.`` or ``/tmp`` must
not be locked.
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600
PRIVATE_UMASK = 0o077  # what the command line runs under: libraries' files are private too


def make_folder(path: Path) -> None:
    """Create ``path`` and its missing parents, owner-only; existing folders stay as they are.

    Raises OSError as ``Path.mkdir`` does (a file in the way, no permission).
    """
    for folder in [*reversed(path.parents), path]:
        if folder.is_dir():
            continue
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # another process made it first
        folder.chmod(FOLDER_MODE)  # exactly, whatever the umask took off


def make_file(path: Path) -> None:
    """Create ``path`` empty and owner-only if it is missing, before a library opens it."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(descriptor, FILE_MODE)
    finally:
        os.close(descriptor)


def open_log(path: Path) -> int:
    """A file descriptor appending to ``path``, created owner-only when missing."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
