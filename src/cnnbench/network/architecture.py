"""The network's architecture as data: layer names, parameter shapes, and every shape derived
from them. The one home of these facts; NumPy only, so ops and backends use it without torch.

The seed notebook's network: three conv layers (kernel 3, stride 2, padding 1) each + ReLU,
flatten 128*4*4 = 2048 -> linear 250 + ReLU -> linear 10.  28 -> 14 -> 7 -> 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONV_LAYERS = ("conv1", "conv2", "conv3")
CONV_STRIDE = 2
CONV_PADDING = 1
INPUT_SHAPE = (1, 28, 28)  # (C, H, W) of one image
NUM_CLASSES = 10

PARAMETER_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1.weight": (32, 1, 3, 3),
    "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 3),
    "conv2.bias": (64,),
    "conv3.weight": (128, 64, 3, 3),
    "conv3.bias": (128,),
    "fc1.weight": (250, 2048),
    "fc1.bias": (250,),
    "fc2.weight": (NUM_CLASSES, 250),
    "fc2.bias": (NUM_CLASSES,),
}

# fc1, fc2: every layer with parameters that is not a convolution, in architecture order.
LINEAR_LAYERS = tuple(
    dict.fromkeys(
        name.split(".")[0] for name in PARAMETER_SHAPES if name.split(".")[0] not in CONV_LAYERS
    )
)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis: (size + 2*padding - kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class ConvShape:
    """One conv layer of the network: its name and (C, H, W) input and output shapes."""

    name: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int]


def conv_shapes() -> tuple[ConvShape, ...]:
    """Every conv layer's input and output shape, from INPUT_SHAPE and PARAMETER_SHAPES."""
    shapes = []
    channels, height, width = INPUT_SHAPE
    for name in CONV_LAYERS:
        out_c, _, kh, kw = PARAMETER_SHAPES[f"{name}.weight"]
        out_h = conv_output_size(height, kh, CONV_STRIDE, CONV_PADDING)
        out_w = conv_output_size(width, kw, CONV_STRIDE, CONV_PADDING)
        shapes.append(ConvShape(name, (channels, height, width), (out_c, out_h, out_w), (kh, kw)))
        channels, height, width = out_c, out_h, out_w
    return tuple(shapes)


FEATURE_SHAPE = conv_shapes()[-1].out_shape  # (C, H, W) that flatten turns into fc1's input


def fc1_hwc_columns(fc1_weight: np.ndarray) -> np.ndarray:
    """fc1's weight (out, C*H*W), columns reordered from PyTorch's (C, H, W) flattening to
    (H, W, C): what an NHWC implementation multiplies its flattened features with."""
    channels, height, width = FEATURE_SHAPE
    return (
        fc1_weight.reshape(len(fc1_weight), channels, height, width)
        .transpose(0, 2, 3, 1)
        .reshape(len(fc1_weight), -1)
    )
