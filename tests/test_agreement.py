"""Pairwise agreement, accuracy and listed disagreements, on synthetic inference tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_step

from cnnbench.common.tables import logit_columns, read_predictions, write_predictions
from cnnbench.steps import agreement

IMAGES = 8
PLANTED = 5  # the image on which backend "c" disagrees with "a" and "b"


def write_table(path: Path, logits: np.ndarray, labels: np.ndarray, start: int = 0) -> Path:
    table = pd.DataFrame(
        {
            "index": np.arange(start, start + len(logits)),
            "label": labels,
            "pred": logits.argmax(axis=1),
            "latency_s": 0.001,
            **{column: logits[:, k] for k, column in enumerate(logit_columns(logits.shape[1]))},
        }
    )
    write_predictions(table, path)
    return path


@pytest.fixture
def planted(tmp_path: Path):
    """Three backends: b is a with tiny logit noise; c is a with image PLANTED flipped to the next
    class, by a margin of 0.25."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, IMAGES)
    logits_a = rng.normal(size=(IMAGES, 10)).astype(np.float32)
    logits_a[np.arange(IMAGES), labels] += 5  # every image right...
    logits_a[1, (labels[1] + 1) % 10] += 10  # ...but image 1
    logits_b = logits_a + rng.uniform(-1e-5, 1e-5, size=logits_a.shape).astype(np.float32)
    logits_c = logits_a.copy()
    logits_c[PLANTED, (logits_a[PLANTED].argmax() + 1) % 10] = logits_c[PLANTED].max() + 0.25
    paths = [
        write_table(tmp_path / f"{name}.csv", logits, labels)
        for name, logits in (("a", logits_a), ("b", logits_b), ("c", logits_c))
    ]
    return paths, labels, {"a": logits_a, "b": logits_b, "c": logits_c}


def test_planted_disagreement_counted_and_listed(planted, tmp_path):
    paths, labels, logits = planted
    outputs = {
        kind: tmp_path / f"out_{kind}.csv" for kind in ("agreement", "accuracy", "disagreements")
    }
    run_step(agreement, input={"predictions": paths}, output=outputs)
    pairs = pd.read_csv(outputs["agreement"]).set_index(["backend_a", "backend_b"])
    assert list(pairs.reset_index().columns) == agreement.AGREEMENT_COLUMNS
    assert sorted(pairs.index) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert (pairs["images"] == IMAGES).all()
    assert pairs.loc[("a", "b"), "agree"] == IMAGES
    assert pairs.loc[("a", "c"), "agree"] == pairs.loc[("b", "c"), "agree"] == IMAGES - 1
    assert pairs.loc[("a", "c"), "agree_fraction"] == pytest.approx((IMAGES - 1) / IMAGES)
    for a, b in pairs.index:
        expected = np.abs(logits[a].astype(np.float64) - logits[b]).max()
        assert pairs.loc[(a, b), "max_abs_logit_diff"] == pytest.approx(expected, rel=1e-6)
    assert pairs.loc[("a", "b"), "max_abs_logit_diff"] <= 1e-5

    accuracy = pd.read_csv(outputs["accuracy"]).set_index("backend")
    for name, values in logits.items():
        correct = int((values.argmax(axis=1) == labels).sum())
        assert accuracy.loc[name, "correct"] == correct
        assert accuracy.loc[name, "accuracy"] == pytest.approx(correct / IMAGES)
    assert accuracy.loc["a", "correct"] == IMAGES - 1  # image 1 is wrong by construction

    listed = pd.read_csv(outputs["disagreements"])
    assert list(listed.columns) == agreement.DISAGREEMENT_COLUMNS
    assert listed["index"].tolist() == [PLANTED, PLANTED]
    assert listed[["backend_a", "backend_b"]].values.tolist() == [["a", "c"], ["b", "c"]]
    row = listed.iloc[0]
    assert row["label"] == labels[PLANTED]
    assert row["pred_a"] == logits["a"][PLANTED].argmax()
    assert row["pred_b"] == (row["pred_a"] + 1) % 10
    top_two = np.sort(logits["a"][PLANTED].astype(np.float64))[-2:]
    assert row["margin_a"] == pytest.approx(top_two[1] - top_two[0], rel=1e-6)
    assert row["margin_b"] == pytest.approx(0.25, rel=1e-5)


def test_pairs_compared_over_common_images(planted, tmp_path):
    paths, labels, logits = planted
    partial = write_table(tmp_path / "partial" / "d.csv", logits["a"][4:], labels[4:], start=4)
    tables = {path.stem: read_predictions(path) for path in (paths[0], partial)}
    pairs, accuracy, listed = agreement.compare(tables)
    assert pairs.loc[0, "images"] == IMAGES - 4 and pairs.loc[0, "agree"] == IMAGES - 4
    assert pairs.loc[0, "max_abs_logit_diff"] == 0
    assert accuracy.set_index("backend").loc["d", "images"] == IMAGES - 4
    assert listed.empty and list(listed.columns) == agreement.DISAGREEMENT_COLUMNS


def test_different_labels_refused(planted, tmp_path):
    paths, labels, logits = planted
    other = write_table(tmp_path / "other" / "e.csv", logits["a"], (labels + 1) % 10)
    tables = {path.stem: read_predictions(path) for path in (paths[0], other)}
    with pytest.raises(ValueError, match="not the same test set"):
        agreement.compare(tables)


def test_margins():
    logits = np.array([[0.0, 3.0, 1.0, 2.5], [1.0, 1.0, 0.0, -1.0]])
    np.testing.assert_allclose(agreement.margins(logits), [0.5, 0.0])
