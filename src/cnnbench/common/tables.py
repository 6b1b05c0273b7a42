"""The per-image predictions table every inference step writes and agreement and the report read.

``results/inference/<backend>.csv``: one row per test image, in index order, logits as float32
(written with ``cnnbench.common.files.FLOAT_FORMAT``, so reading them back gives the exact values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cnnbench.common.files import write_table
from cnnbench.network.architecture import NUM_CLASSES

LOGIT_COLUMNS = [f"logit_{k}" for k in range(NUM_CLASSES)]
PREDICTION_COLUMNS = ["index", "label", "pred", "latency_s", *LOGIT_COLUMNS]


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions CSV, logits as float32 (exactly the values written), columns checked."""
    table = pd.read_csv(path, dtype={column: np.float32 for column in LOGIT_COLUMNS})
    if list(table.columns) != PREDICTION_COLUMNS:
        raise ValueError(f"{path}: columns {list(table.columns)}, expected {PREDICTION_COLUMNS}")
    return table


def write_predictions(table: pd.DataFrame, path: str | Path) -> None:
    if list(table.columns) != PREDICTION_COLUMNS:
        raise ValueError(f"columns {list(table.columns)}, expected {PREDICTION_COLUMNS}")
    write_table(table, path)
