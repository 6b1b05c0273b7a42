"""The per-image predictions table every inference step writes and agreement and the report read.

``results/inference/<backend>.csv``: one row per test image, in index order, logits as float32
(written with ``cnnbench.common.files.FLOAT_FORMAT``, so reading them back gives the exact values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cnnbench.common.files import write_table

KEY_COLUMNS = ["index", "label", "pred", "latency_s"]  # then logit_0 .. logit_{classes-1}


def logit_columns(classes: int) -> list[str]:
    return [f"logit_{k}" for k in range(classes)]


def prediction_columns(classes: int) -> list[str]:
    return [*KEY_COLUMNS, *logit_columns(classes)]


def logit_columns_of(table: pd.DataFrame) -> list[str]:
    """The logit columns of a predictions table (as many as the network has classes)."""
    return [column for column in table.columns if column.startswith("logit_")]


def _check_columns(columns: list[str], source: str) -> None:
    expected = prediction_columns(len(columns) - len(KEY_COLUMNS))
    if columns != expected or len(columns) < len(KEY_COLUMNS) + 2:
        raise ValueError(f"{source}columns {columns}, expected {expected[:6]} ... (2+ logits)")


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions CSV, logits as float32 (exactly the values written), columns checked."""
    columns = list(pd.read_csv(path, nrows=0).columns)
    _check_columns(columns, f"{path}: ")
    return pd.read_csv(path, dtype={column: np.float32 for column in columns[len(KEY_COLUMNS) :]})


def write_predictions(table: pd.DataFrame, path: str | Path) -> None:
    _check_columns(list(table.columns), "")
    write_table(table, path)
