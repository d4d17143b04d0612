"""Files only this service's user may read (password files, ACLs), never seen half written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, mode 0600, atomically.

    mkstemp creates with O_EXCL and mode 0600 whatever the umask, and the rename is atomic,
    so no reader ever sees the file wider open or half full; a failure leaves no temp file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
