"""Do the backends agree? Pairwise argmax agreement and logit differences, per-backend accuracy.

Each input is an inference table (``results/inference/<backend>.csv``); the backend's name is the
file's stem. Pairs are compared over the images both ran. Every image on which a pair's
predictions differ is listed with both logit margins (top logit minus runner-up), so a
disagreement on a near-tie can be told from a real one.

Job: input predictions (the inference CSVs, named <backend>.csv); output agreement, accuracy,
disagreements.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from cnnbench.common.errors import UserError
from cnnbench.common.files import write_table
from cnnbench.common.job import Job, run_job
from cnnbench.common.tables import logit_columns_of, read_predictions

AGREEMENT_COLUMNS = [
    "backend_a",
    "backend_b",
    "images",
    "agree",
    "agree_fraction",
    "max_abs_logit_diff",
]
ACCURACY_COLUMNS = ["backend", "images", "correct", "accuracy"]
DISAGREEMENT_COLUMNS = [
    "index",
    "label",
    "backend_a",
    "backend_b",
    "pred_a",
    "pred_b",
    "margin_a",
    "margin_b",
]


def margins(logits: np.ndarray) -> np.ndarray:
    """Top logit minus runner-up, per row."""
    top_two = np.sort(logits, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def compare(
    tables: dict[str, pd.DataFrame],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(agreement, accuracy, disagreements) tables for inference tables keyed by backend."""
    correct = {name: table["pred"] == table["label"] for name, table in tables.items()}
    accuracy = pd.DataFrame(
        [
            {
                "backend": name,
                "images": len(table),
                "correct": int(correct[name].sum()),
                "accuracy": float(correct[name].mean()),
            }
            for name, table in tables.items()
        ],
        columns=ACCURACY_COLUMNS,
    )
    agreement, disagreements = [], []
    for name_a, name_b in itertools.combinations(tables, 2):
        both = tables[name_a].merge(tables[name_b], on="index", suffixes=("_a", "_b"))
        if not (both["label_a"] == both["label_b"]).all():
            raise ValueError(f"{name_a} and {name_b} disagree on labels: not the same test set")
        # float64, so differences of float32 logits are exact
        columns = logit_columns_of(tables[name_a])
        logits_a = both[[f"{c}_a" for c in columns]].to_numpy(dtype=np.float64)
        logits_b = both[[f"{c}_b" for c in columns]].to_numpy(dtype=np.float64)
        same = both["pred_a"] == both["pred_b"]
        agreement.append(
            {
                "backend_a": name_a,
                "backend_b": name_b,
                "images": len(both),
                "agree": int(same.sum()),
                "agree_fraction": float(same.mean()) if len(both) else float("nan"),
                "max_abs_logit_diff": float(np.abs(logits_a - logits_b).max(initial=0.0)),
            }
        )
        differ = ~same.to_numpy()
        disagreements += [
            {
                "index": row.index,
                "label": row.label_a,
                "backend_a": name_a,
                "backend_b": name_b,
                "pred_a": row.pred_a,
                "pred_b": row.pred_b,
                "margin_a": margin_a,
                "margin_b": margin_b,
            }
            for row, margin_a, margin_b in zip(
                both[differ].itertuples(),
                margins(logits_a[differ]),
                margins(logits_b[differ]),
                strict=True,
            )
        ]
    return (
        pd.DataFrame(agreement, columns=AGREEMENT_COLUMNS),
        accuracy,
        pd.DataFrame(disagreements, columns=DISAGREEMENT_COLUMNS),
    )


def run(job: Job) -> None:
    paths = job.paths("input", "predictions")
    names = [path.stem for path in paths]
    if len(set(names)) != len(names):
        raise UserError(f"backend names (file stems) must be distinct, got {names}")
    tables = {path.stem: read_predictions(path) for path in paths}
    outputs = ("agreement", "accuracy", "disagreements")
    for table, name in zip(compare(tables), outputs, strict=True):
        write_table(table, job.path("output", name))


if __name__ == "__main__":
    run_job(run)
