"""The network's architecture as one value: every layer, its shapes, its parameters, its work.

Built from config.yaml's ``model:`` section (:func:`build`) and recorded in the weights' manifest
(:meth:`Architecture.to_dict`), it is the one home of these facts: the torch model, the ONNX
graph, the NumPy network, every backend, the training and the report are built from it. NumPy
only, so ops and backends use it without torch.

Every convolution and hidden linear layer is followed by ReLU; pooling layers and the output layer
are not. The feature layers' output is flattened in PyTorch's (C, H, W) order into the first
linear layer. Layer names: ``conv1..`` and ``pool1..`` counted separately, ``fc1..`` for the
hidden and output linear layers, which are also the parameters' state_dict prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from math import prod

import numpy as np

from cnnbench.common.errors import UserError

CONV = "conv"
MAXPOOL = "maxpool"
AVGPOOL = "avgpool"
LINEAR = "linear"
POOL_KINDS = {"max": MAXPOOL, "avg": AVGPOOL}

# The seed notebook's network, the default config: 3 x (conv 3x3, stride 2, padding 1, ReLU)
# 28 -> 14 -> 7 -> 4, flatten 128*4*4 = 2048 -> linear 250 + ReLU -> linear 10.
SEED_MODEL = {
    "layers": [
        {"conv": 32, "kernel": 3, "stride": 2, "padding": 1},
        {"conv": 64, "kernel": 3, "stride": 2, "padding": 1},
        {"conv": 128, "kernel": 3, "stride": 2, "padding": 1},
    ],
    "hidden": [250],
}
MNIST_INPUT_SHAPE = (1, 28, 28)
MNIST_CLASSES = 10


class ArchitectureError(UserError, ValueError):
    """A model section that describes no runnable network; the message names the layer."""


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling along one axis (PyTorch's floor rule)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class Layer:
    """One layer: what it computes and the shapes of one image's input and output."""

    name: str
    kind: str  # CONV, MAXPOOL, AVGPOOL or LINEAR
    in_shape: tuple[int, ...]  # (C, H, W) for conv and pool layers, (features,) for linear
    out_shape: tuple[int, ...]
    relu: bool  # followed by ReLU (every conv and hidden linear layer)
    kernel: tuple[int, int] | None = None  # conv and pool layers
    stride: int | None = None
    padding: int | None = None

    @property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """This layer's parameters by state_dict key, PyTorch layouts; none for pooling."""
        if self.kind == CONV:
            shape = (self.out_shape[0], self.in_shape[0], *self.kernel)
        elif self.kind == LINEAR:
            shape = (self.out_shape[0], self.in_shape[0])
        else:
            return {}
        return {f"{self.name}.weight": shape, f"{self.name}.bias": shape[:1]}

    @property
    def macs(self) -> int:
        """Multiply-adds per image as PyTorch's FlopCounterMode counts them (1 MAC = 2 FLOPs):
        every kernel tap of every output, padded taps included; biases, ReLU and pooling free."""
        if self.kind == CONV:
            return prod(self.out_shape) * self.in_shape[0] * prod(self.kernel)
        if self.kind == LINEAR:
            return self.in_shape[0] * self.out_shape[0]
        return 0

    @property
    def parameter_count(self) -> int:
        return sum(prod(shape) for shape in self.parameter_shapes.values())


@dataclass(frozen=True)
class Architecture:
    """The whole network: input shape, classes, layers (feature layers, then linear layers), and
    the config it was built from (``model``), so it can be recorded and rebuilt."""

    input_shape: tuple[int, int, int]
    classes: int
    layers: tuple[Layer, ...]
    model: dict

    def __hash__(self) -> int:  # `model` is a dict: the layers determine the network
        return hash((self.input_shape, self.classes, self.layers))

    @property
    def feature_layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.kind != LINEAR)

    @property
    def linear_layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.kind == LINEAR)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the last feature layer's output: what flatten feeds the first linear layer."""
        return self.feature_layers[-1].out_shape if self.feature_layers else self.input_shape

    @cached_property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter by state_dict key, in the order PyTorch creates and saves them."""
        return {
            name: shape for layer in self.layers for name, shape in layer.parameter_shapes.items()
        }

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def first_linear_hwc_columns(self, weight: np.ndarray) -> np.ndarray:
        """The first linear layer's weight (out, C*H*W), columns reordered from PyTorch's (C, H, W)
        flattening to (H, W, C): what an NHWC implementation multiplies its features with."""
        channels, height, width = self.feature_shape
        return (
            weight.reshape(len(weight), channels, height, width)
            .transpose(0, 2, 3, 1)
            .reshape(len(weight), -1)
        )

    def to_dict(self) -> dict:
        """JSON-able record (the manifest's ``architecture``); :func:`from_dict` rebuilds it."""
        return {
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "model": self.model,
            "layers": [
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "in_shape": list(layer.in_shape),
                    "out_shape": list(layer.out_shape),
                    "relu": layer.relu,
                    **(
                        {
                            "kernel": list(layer.kernel),
                            "stride": layer.stride,
                            "padding": layer.padding,
                        }
                        if layer.kernel
                        else {}
                    ),
                }
                for layer in self.layers
            ],
        }

    def summary_rows(self) -> list[dict]:
        """One row per layer, as torchinfo's summary: output shape, parameters, multiply-adds."""
        return [
            {
                "layer": layer.name,
                "kind": layer.kind + (" + ReLU" if layer.relu else ""),
                "output_shape": list(layer.out_shape),
                "parameters": layer.parameter_count,
                "macs": layer.macs,
            }
            for layer in self.layers
        ]


def from_dict(record: dict) -> Architecture:
    """The architecture a manifest records (rebuilt from its config, so it is checked again)."""
    try:
        return build(record["model"], tuple(record["input_shape"]), record["classes"])
    except (KeyError, TypeError) as error:
        raise ArchitectureError(f"not an architecture record ({error!r})") from None


def _describe(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[2]}"


def _window_layer(index: int, spec: dict, counts: dict, in_shape: tuple[int, int, int]) -> Layer:
    where = f"model.layers[{index}]"
    channels, height, width = in_shape
    if "conv" in spec:
        kind, out_channels = CONV, spec["conv"]
        if out_channels < 1:
            raise ArchitectureError(
                f"{where}: conv {out_channels}: a layer needs at least 1 channel"
            )
        kernel, stride, padding = spec["kernel"], spec.get("stride", 1), spec.get("padding", 0)
    else:
        kind, out_channels = POOL_KINDS[spec["pool"]], channels
        kernel = spec["kernel"]
        stride, padding = spec.get("stride", kernel), spec.get("padding", 0)
        if 2 * padding > kernel:  # PyTorch's rule: a window never lies wholly in the padding
            raise ArchitectureError(
                f"{where}: pool padding {padding} is more than half the kernel {kernel}"
            )
    if kernel < 1 or stride < 1 or padding < 0:
        raise ArchitectureError(
            f"{where}: kernel {kernel}, stride {stride}, padding {padding}: kernel and stride "
            "must be at least 1, padding at least 0"
        )
    out_height = conv_output_size(height, kernel, stride, padding)
    out_width = conv_output_size(width, kernel, stride, padding)
    if out_height < 1 or out_width < 1:
        raise ArchitectureError(
            f"{where}: input {_describe(in_shape)}, kernel {kernel}, padding {padding}: "
            "no output pixel"
        )
    prefix = "conv" if kind == CONV else "pool"
    counts[prefix] += 1
    return Layer(
        name=f"{prefix}{counts[prefix]}",
        kind=kind,
        in_shape=in_shape,
        out_shape=(out_channels, out_height, out_width),
        relu=kind == CONV,
        kernel=(kernel, kernel),
        stride=stride,
        padding=padding,
    )


def build(model: dict, input_shape: tuple[int, int, int], classes: int) -> Architecture:
    """The architecture ``model`` (config.yaml's ``model:`` section) describes for images of
    ``input_shape`` (C, H, W) and ``classes`` outputs; ArchitectureError names a bad layer."""
    input_shape = tuple(int(size) for size in input_shape)
    if classes < 2:
        raise ArchitectureError(f"dataset.classes is {classes}: a classifier needs at least 2")
    layers: list[Layer] = []
    counts = {"conv": 0, "pool": 0}
    shape = input_shape
    for index, spec in enumerate(model["layers"]):
        layer = _window_layer(index, spec, counts, shape)
        layers.append(layer)
        shape = layer.out_shape
    features = prod(shape)
    widths = [*model.get("hidden", []), classes]
    for index, width in enumerate(widths):
        if width < 1:
            raise ArchitectureError(
                f"model.hidden[{index}]: {width}: a layer needs at least 1 unit"
            )
        layers.append(
            Layer(
                name=f"fc{index + 1}",
                kind=LINEAR,
                in_shape=(features,),
                out_shape=(width,),
                relu=index < len(widths) - 1,
            )
        )
        features = width
    return Architecture(input_shape, classes, tuple(layers), model)


SEED = build(SEED_MODEL, MNIST_INPUT_SHAPE, MNIST_CLASSES)


def from_config(config: dict) -> Architecture:
    """The architecture a whole experiment config describes: its ``model`` section for the images
    and classes of its ``dataset`` (one channel: IDX image files are grey levels)."""
    dataset = config["dataset"]
    return build(config["model"], (1, *dataset["image_size"]), dataset["classes"])
