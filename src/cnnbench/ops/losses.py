"""Softmax, log-softmax and cross-entropy over the last axis, stable for logits of any size.

Subtracting the row maximum first keeps every exp() argument <= 0, so logits of +-1e4 give
no overflow (inf) and no inf - inf (nan).
"""

from __future__ import annotations

import numpy as np

from cnnbench.ops.checks import check_array, check_classification


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log(softmax(z)) over the last axis, computed as z - max - log(sum(exp(z - max)))."""
    check_array("z", z, None, "(..., classes)")
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """exp(z) / sum(exp(z)) over the last axis."""
    check_array("z", z, None, "(..., classes)")
    exps = np.exp(z - z.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.floating:
    """Mean over the batch of -log softmax(logits)[n, labels[n]]; labels are class indices."""
    check_classification(logits, labels)
    return -log_softmax(logits)[np.arange(len(labels)), labels].mean()


def cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """dLoss/dlogits of :func:`cross_entropy`: (softmax(logits) - one_hot(labels)) / N."""
    check_classification(logits, labels)
    dlogits = softmax(logits)
    dlogits[np.arange(len(labels)), labels] -= 1
    dlogits /= len(labels)
    return dlogits
