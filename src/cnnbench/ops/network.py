"""The whole network in NumPy: forward (keeping what backward needs) and backward.

Built from the exported weights (``cnnbench.network.weights.load_weights``), with either variant:
``loops`` (scalar-loop convolution and linear layers) or ``im2col`` (im2col convolution and
matmul linear layers).  ReLU and the loss are shared: they are elementwise either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnbench.network.architecture import CONV, Architecture
from cnnbench.network.weights import check_parameters, load_weights
from cnnbench.ops.im2col import conv2d_backward_im2col, conv2d_im2col
from cnnbench.ops.layers import linear, linear_backward, relu, relu_backward
from cnnbench.ops.loops import (
    conv2d_backward_loops,
    conv2d_loops,
    linear_backward_loops,
    linear_loops,
)
from cnnbench.ops.losses import cross_entropy, cross_entropy_backward

INPUT_GRADIENT = "input"  # key of dLoss/dx among the gradients, beside the parameter names


@dataclass(frozen=True)
class Variant:
    """The layer functions one implementation of the network is built from."""

    name: str
    conv2d: Callable[..., np.ndarray]
    conv2d_backward: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]
    linear: Callable[..., np.ndarray]
    linear_backward: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


VARIANTS: dict[str, Variant] = {
    "loops": Variant(
        "loops", conv2d_loops, conv2d_backward_loops, linear_loops, linear_backward_loops
    ),
    "im2col": Variant("im2col", conv2d_im2col, conv2d_backward_im2col, linear, linear_backward),
}


@dataclass
class ForwardCache:
    """What backward needs: each layer's input, and each ReLU layer's input (pre-activation)."""

    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    preactivations: dict[str, np.ndarray] = field(default_factory=dict)


class Network:
    """The network ``architecture`` describes, in NumPy: its feature layers (conv + ReLU),
    flatten, its linear layers (+ ReLU but for the output layer).

    ``arrays``: the dict from ``load_weights`` (float32, PyTorch layouts); the parameters are
    cast once to ``dtype``, and inputs must have that dtype.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        architecture: Architecture,
        variant: str = "im2col",
        dtype: type[np.floating] | np.dtype = np.float32,
    ) -> None:
        check_parameters(arrays, architecture, source="network weights")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if any(layer.kind != CONV for layer in architecture.feature_layers):
            raise NotImplementedError("pooling layers are not in the NumPy network yet")
        self.architecture = architecture
        self.variant = VARIANTS[variant]
        self.dtype = np.dtype(dtype)
        self.parameters = {
            name: np.asarray(arrays[name], dtype=self.dtype)
            for name in architecture.parameter_shapes
        }

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        architecture: Architecture,
        variant: str = "im2col",
        dtype: type[np.floating] | np.dtype = np.float32,
    ) -> Network:
        """The network with the weights of an exported ``weights.npz``."""
        return cls(load_weights(path, architecture), architecture, variant, dtype)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ForwardCache]:
        """Logits (N, classes) of images ``x`` (N, C, H, W), and the cache for :meth:`backward`."""
        cache = ForwardCache()
        h = x
        for layer in self.architecture.feature_layers:
            cache.inputs[layer.name] = h
            z = self.variant.conv2d(
                h,
                self.parameters[f"{layer.name}.weight"],
                self.parameters[f"{layer.name}.bias"],
                layer.stride,
                layer.padding,
            )
            cache.preactivations[layer.name] = z
            h = relu(z)
        h = h.reshape(h.shape[0], -1)
        for layer in self.architecture.linear_layers:
            cache.inputs[layer.name] = h
            h = self.variant.linear(
                h, self.parameters[f"{layer.name}.weight"], self.parameters[f"{layer.name}.bias"]
            )
            if layer.relu:  # the output layer's outputs are the logits
                cache.preactivations[layer.name] = h
                h = relu(h)
        return h, cache

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of images ``x`` (N, C, H, W)."""
        return self.forward(x)[0]

    def backward(self, cache: ForwardCache, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """dLoss/d(every parameter) by name, and dLoss/dx under ``"input"``, given dLoss/dlogits."""
        grads: dict[str, np.ndarray] = {}
        d = dlogits
        for layer in reversed(self.architecture.linear_layers):
            name = layer.name
            if layer.relu:
                d = relu_backward(d, cache.preactivations[name])
            d, grads[f"{name}.weight"], grads[f"{name}.bias"] = self.variant.linear_backward(
                d, cache.inputs[name], self.parameters[f"{name}.weight"]
            )
        d = d.reshape(len(d), *self.architecture.feature_shape)
        for layer in reversed(self.architecture.feature_layers):
            name = layer.name
            d = relu_backward(d, cache.preactivations[name])
            d, grads[f"{name}.weight"], grads[f"{name}.bias"] = self.variant.conv2d_backward(
                d,
                cache.inputs[name],
                self.parameters[f"{name}.weight"],
                layer.stride,
                layer.padding,
            )
        grads[INPUT_GRADIENT] = d
        return {name: grads[name] for name in (*self.architecture.parameter_shapes, INPUT_GRADIENT)}

    def loss_and_gradients(
        self, x: np.ndarray, labels: np.ndarray
    ) -> tuple[np.floating, dict[str, np.ndarray]]:
        """Mean cross-entropy of ``x`` against ``labels``, and its gradients (see :meth:`backward`)."""
        logits, cache = self.forward(x)
        return cross_entropy(logits, labels), self.backward(
            cache, cross_entropy_backward(logits, labels)
        )
