"""The whole network in NumPy: forward (keeping what backward needs) and backward.

Built from an ``Architecture`` (``cnnbench.network.architecture``: any stack of convolution and
max/average pooling layers, then linear layers; ReLU after every conv and hidden linear layer)
and its weights (``cnnbench.network.weights.load_weights``), with either variant: ``loops``
(scalar-loop layers) or ``im2col`` (im2col convolution, strided pooling, matmul linear layers).
ReLU and the loss are shared: they are elementwise either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from cnnbench.network.architecture import CONV, LINEAR, MAXPOOL, Architecture, Layer
from cnnbench.network.weights import check_parameters, load_weights
from cnnbench.ops.im2col import (
    conv2d_backward_im2col,
    conv2d_im2col,
    conv2d_im2col_with_columns,
)
from cnnbench.ops.layers import linear, linear_backward, relu, relu_backward
from cnnbench.ops.loops import (
    conv2d_backward_loops,
    conv2d_loops,
    linear_backward_loops,
    linear_loops,
)
from cnnbench.ops.losses import cross_entropy, cross_entropy_backward
from cnnbench.ops.pool import (
    avgpool2d_backward_loops,
    avgpool2d_backward_strided,
    avgpool2d_loops,
    avgpool2d_strided,
    maxpool2d_backward_loops,
    maxpool2d_backward_strided,
    maxpool2d_indices,
    maxpool2d_loops,
    maxpool2d_strided,
)

INPUT_GRADIENT = "input"  # key of dLoss/dx among the gradients, beside the parameter names


def _parameter_gradients(backward: Callable, names: tuple[str, str]) -> dict[str, np.ndarray]:
    """A layer's weight and bias gradients from its backward ``partial``, without its dx."""
    return dict(zip(names, backward(input_gradient=False)[1:], strict=True))


@dataclass(frozen=True)
class Variant:
    """The layer functions one implementation of the network is built from."""

    name: str
    conv2d: Callable[..., np.ndarray]
    # conv2d's output and what its backward can reuse (keyword arguments of conv2d_backward)
    conv2d_keeping: Callable[..., tuple[np.ndarray, dict[str, np.ndarray]]]
    conv2d_backward: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]
    linear: Callable[..., np.ndarray]
    linear_backward: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]
    maxpool2d: Callable[..., np.ndarray]
    maxpool2d_backward: Callable[..., np.ndarray]
    avgpool2d: Callable[..., np.ndarray]
    avgpool2d_backward: Callable[..., np.ndarray]
    # conv2d_backward and linear_backward take input_gradient and parameter_gradients flags,
    # so a layer's input gradient and its parameters' can be computed apart (Network.backward)
    splits_backward: bool = False


VARIANTS: dict[str, Variant] = {
    "loops": Variant(
        "loops",
        conv2d_loops,
        lambda *args: (conv2d_loops(*args), {}),  # the loops keep nothing for backward
        conv2d_backward_loops,
        linear_loops,
        linear_backward_loops,
        maxpool2d_loops,
        maxpool2d_backward_loops,
        avgpool2d_loops,
        avgpool2d_backward_loops,
    ),
    "im2col": Variant(
        "im2col",
        conv2d_im2col,
        conv2d_im2col_with_columns,  # keeps the column matrix: built once, not twice
        conv2d_backward_im2col,
        linear,
        linear_backward,
        maxpool2d_strided,
        maxpool2d_backward_strided,
        avgpool2d_strided,
        avgpool2d_backward_strided,
        splits_backward=True,
    ),
}


@dataclass
class ForwardCache:
    """What backward needs: each layer's input, each ReLU's output, and what each convolution's
    forward kept for its backward (``Variant.conv2d_keeping``).

    A ReLU's backward needs only where its input was > 0, which is where its output is; so the
    forward computes each ReLU in place, over the layer's output (3-4 % of a training step).
    """

    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    kept: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class Network:
    """An ``Architecture``'s network in NumPy: its layers in order, each conv and hidden linear
    layer followed by ReLU, flatten (PyTorch's (C, H, W) order) before the first linear layer.

    ``arrays``: the dict from ``load_weights`` (float32, PyTorch layouts, the architecture's
    parameters); they are cast once to ``dtype``, and inputs must have that dtype.
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
        self.architecture = architecture
        self.variant = VARIANTS[variant]
        self.dtype = np.dtype(dtype)
        self.parameters = {
            name: np.asarray(arrays[name], dtype=self.dtype)
            for name in architecture.parameter_shapes
        }
        self._first_linear = architecture.linear_layers[0].name

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

    def _layer(self, layer: Layer, h: np.ndarray) -> np.ndarray:
        """``layer``'s output (before its ReLU) for its input ``h``."""
        v = self.variant
        if layer.kind == CONV:
            return v.conv2d(h, *self._weights(layer), layer.stride, layer.padding)
        if layer.kind == LINEAR:
            return v.linear(h, *self._weights(layer))
        pool = v.maxpool2d if layer.kind == MAXPOOL else v.avgpool2d
        return pool(h, layer.kernel, layer.stride, layer.padding)

    def _weights(self, layer: Layer) -> tuple[np.ndarray, np.ndarray]:
        return self.parameters[f"{layer.name}.weight"], self.parameters[f"{layer.name}.bias"]

    def _flatten(self, layer: Layer, h: np.ndarray) -> np.ndarray:
        """``h`` as the first linear layer takes it: flattened in (C, H, W) order."""
        return h.reshape(h.shape[0], -1) if layer.name == self._first_linear else h

    def stage(self, layer: Layer, h: np.ndarray) -> np.ndarray:
        """One layer applied to its input: flatten (first linear layer), the layer, its ReLU."""
        z = self._layer(layer, self._flatten(layer, h))
        return relu(z) if layer.relu else z

    def stages(self) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
        """(layer name, the layer as a function) in order; applied in turn they give the logits."""
        return [(layer.name, partial(self.stage, layer)) for layer in self.architecture.layers]

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ForwardCache]:
        """Logits (N, classes) of images ``x`` (N, C, H, W), and the cache for :meth:`backward`."""
        cache = ForwardCache()
        h = x
        for layer in self.architecture.layers:
            h = self._flatten(layer, h)
            cache.inputs[layer.name] = h
            if layer.kind == CONV:
                h, cache.kept[layer.name] = self.variant.conv2d_keeping(
                    h, *self._weights(layer), layer.stride, layer.padding
                )
            else:
                h = self._layer(layer, h)
            if layer.relu:
                h = relu(h, out=h)
                cache.activations[layer.name] = h
        return h, cache

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of images ``x`` (N, C, H, W)."""
        return self.forward(x)[0]

    def backward(
        self,
        cache: ForwardCache,
        dlogits: np.ndarray,
        input_gradient: bool = True,
        defer: Callable[[Callable[[], dict[str, np.ndarray]]], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """dLoss/d(every parameter) by name, and dLoss/dx under ``"input"``, given dLoss/dlogits.

        ``input_gradient=False`` (training): no ``"input"``, and a first convolution or pooling
        layer does not compute its input's gradient (a first linear layer's costs one small
        matmul and is dropped).

        ``defer`` (training on two threads): each layer's parameter gradients are left out of
        the result and handed over as ``defer(compute)``, ``compute()`` returning them by name,
        before the chain of input gradients goes through that layer. ``compute`` reads only the
        cache and gradients nothing changes, so it may run at once, on another thread, beside
        the chain; but the chain reads the layer's weights, so they must stay as they are until
        the next ``defer`` call or until this returns. The same numbers either way; a variant
        that cannot split a layer's backward hands them all over at the end.
        """
        grads: dict[str, np.ndarray] = {}
        v = self.variant
        split = defer is not None and v.splits_backward
        d = dlogits
        first = self.architecture.layers[0].name
        for layer in reversed(self.architecture.layers):
            if layer.relu:
                # in place: d is the gradient the layer after computed, held by nothing else;
                # only where it has the activation's memory order, which a new array would get
                # (a bias gradient sums d in its memory order: other bits in another)
                activation = cache.activations[layer.name]
                d = relu_backward(d, activation, out=d if d.strides == activation.strides else None)
            h = cache.inputs[layer.name]
            wanted = input_gradient or layer.name != first  # this layer's dx
            if layer.kind in (CONV, LINEAR):
                if layer.kind == CONV:
                    backward = partial(
                        v.conv2d_backward,
                        d,
                        h,
                        self.parameters[f"{layer.name}.weight"],
                        layer.stride,
                        layer.padding,
                        **cache.kept[layer.name],
                    )
                else:
                    backward = partial(
                        v.linear_backward, d, h, self.parameters[f"{layer.name}.weight"]
                    )
                names = (f"{layer.name}.weight", f"{layer.name}.bias")
                if split:
                    defer(partial(_parameter_gradients, backward, names))
                    d = backward(input_gradient=wanted, parameter_gradients=False)[0]
                else:
                    # the loops' linear backward always computes dx
                    flags = {"input_gradient": wanted} if layer.kind == CONV else {}
                    d, *parameters = backward(**flags)
                    grads.update(zip(names, parameters, strict=True))
                if layer.name == self._first_linear and d is not None:
                    d = d.reshape(len(d), *self.architecture.feature_shape)
            elif wanted:
                pool = v.maxpool2d_backward if layer.kind == MAXPOOL else v.avgpool2d_backward
                d = pool(d, h, layer.kernel, layer.stride, layer.padding)
        ordered = {
            name: grads[name] for name in self.architecture.parameter_shapes if name in grads
        }
        if defer is not None and not split:  # computed here after all: handed over at the end
            computed, ordered = ordered, {}
            defer(lambda: computed)
        if input_gradient:
            ordered[INPUT_GRADIENT] = d
        return ordered

    def kinks(self, cache: ForwardCache) -> list[np.ndarray]:
        """Which piece of the piecewise-smooth network the forward pass took: each ReLU's sign
        pattern and each max pooling's winners (``maxpool2d_indices``).  The loss has the
        derivatives ``backward`` computes only where this stays the same, so a finite-difference
        check must keep it (``steps.gradcheck``)."""
        pattern = [a > 0 for a in cache.activations.values()]
        for layer in self.architecture.feature_layers:
            if layer.kind == MAXPOOL:
                pattern.append(
                    maxpool2d_indices(
                        cache.inputs[layer.name], layer.kernel, layer.stride, layer.padding
                    )
                )
        return pattern

    def loss_and_gradients(
        self, x: np.ndarray, labels: np.ndarray, input_gradient: bool = True
    ) -> tuple[np.floating, dict[str, np.ndarray]]:
        """Mean cross-entropy of ``x`` against ``labels``, and its gradients (see :meth:`backward`)."""
        logits, cache = self.forward(x)
        return cross_entropy(logits, labels), self.backward(
            cache, cross_entropy_backward(logits, labels), input_gradient
        )
