"""All-or-nothing result files: a temporary file beside the target, moved into place on success."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

# 9 significant digits reproduce every float32 exactly when read back
FLOAT_FORMAT = "%.9g"


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent
    )
    os.close(handle)
    # mkstemp creates 0600; results are ordinary files, readable as the umask allows.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """A float32-valued table as CSV, floats with FLOAT_FORMAT (exact for float32), atomically."""
    with atomic_output(path) as temporary:
        table.to_csv(temporary, index=False, float_format=FLOAT_FORMAT)


def write_rows(rows: list[dict], columns: Sequence[str], path: str | Path) -> None:
    """Rows of Python values as CSV, floats at full precision (repr), atomically."""
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_json(record: dict, path: str | Path, sort_keys: bool = False) -> None:
    """A JSON object, indented, newline-terminated, atomically."""
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(record, indent=2, sort_keys=sort_keys) + "\n")
