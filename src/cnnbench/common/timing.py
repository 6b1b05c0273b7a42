"""The one way this project times code: ``time.perf_counter`` around the call only, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

import numpy as np


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median over ``repeats`` calls of ``function()``'s wall time (no warm-up: the caller's)."""
    clock = time.perf_counter
    seconds = []
    for _ in range(repeats):
        before = clock()
        function()
        seconds.append(clock() - before)
    return statistics.median(seconds)


def timed_predictions(
    predict: Callable[[np.ndarray], np.ndarray], indices: Iterable[int], images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and seconds of one ``predict`` call per image, the clock around the call only.

    ``indices`` runs over ``range(len(images))`` (wrapped in a progress bar, or not).
    """
    logits: list[np.ndarray] = [None] * len(images)
    latencies = np.empty(len(images))
    clock = time.perf_counter  # no lookups inside the timed interval
    for i in indices:
        image = images[i : i + 1]
        before = clock()
        result = predict(image)
        latencies[i] = clock() - before
        logits[i] = result[0]
    return np.stack(logits).astype(np.float32, copy=False), latencies
