"""The model's own mistakes, seen through the reference backend: confusion matrix and gallery."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cnnbench.common.tables import logit_columns_of
from cnnbench.ops import softmax

from .. import figures, fmt
from ..common import MAX_GALLERY, images_phrase, thumbnail
from ..inputs import Results


def section(results: Results) -> dict[str, Any] | None:
    reference = results.reference
    if reference is None:
        return None
    table = reference.table
    labels = table["label"].to_numpy(dtype=int)
    preds = table["pred"].to_numpy(dtype=int)
    matrix = pd.crosstab(pd.Series(labels, name="true"), pd.Series(preds, name="predicted"))
    classes = range(len(logit_columns_of(table)))
    matrix = matrix.reindex(index=classes, columns=classes, fill_value=0)
    wrong = np.flatnonzero(preds != labels)
    probabilities = softmax(table[logit_columns_of(table)].to_numpy(dtype=float))
    confidence = probabilities.max(axis=1)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")]
    gallery = []
    for row in order[:MAX_GALLERY]:
        index = int(table["index"].iloc[row])
        gallery.append(
            {
                "index": index,
                "label": int(labels[row]),
                "pred": int(preds[row]),
                "confidence": fmt.percent(confidence[row], 1),
                "label_probability": fmt.percent(probabilities[row, labels[row]], 1),
                "thumbnail": thumbnail(results, index),
            }
        )
    return {
        "backend": reference.name,
        "images": fmt.integer(len(table)),
        "wrong": fmt.integer(len(wrong)),
        "images_phrase": images_phrase(results, len(table)),
        "figure": figures.confusion_matrix(matrix, f"{reference.name}: true vs predicted class"),
        "gallery": gallery,
        "hidden": max(len(wrong) - MAX_GALLERY, 0),
    }
