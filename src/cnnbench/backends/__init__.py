"""Every implementation of the network's forward pass behind one small interface.

``load(name, weights_path, architecture)`` builds a backend from an exported ``weights.npz``
(validated against the architecture by ``cnnbench.network.weights.load_weights``);
``backend.predict(x)`` maps float32 ``(N, C, H, W)`` images in [0, 1] to float32 logits
``(N, classes)``, the architecture's shapes. Implementations are imported only when loaded, so the NumPy
backends never pay for importing torch or numba.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnbench.network.architecture import Architecture
from cnnbench.network.weights import load_weights

Stage = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Traits:
    """What the pipeline, bench and throughput need to know of a backend without loading it."""

    module: str  # in this package; "pytorch" so the module is not named like torch
    cls: str
    reference: bool = False  # every other backend is compared with this one
    slow: bool = False  # ~0.1 s or more per image: sharded in the pipeline, sampled when timed
    peer: bool = False  # a production engine the hand-written backends are measured against


_IMPLEMENTATIONS = {
    "torch": Traits("pytorch", "TorchBackend", reference=True),
    "numpy_im2col": Traits("numpy_im2col", "NumpyIm2colBackend"),
    "numpy_loops": Traits("numpy_loops", "NumpyLoopsBackend", slow=True),
    "numba_loops": Traits("numba_loops", "NumbaLoopsBackend"),
    # the module is not named onnxruntime so it does not shadow the library it imports
    "onnxruntime": Traits("onnxruntime_peer", "OnnxRuntimeBackend", peer=True),
}
NAMES = tuple(_IMPLEMENTATIONS)
(REFERENCE,) = (name for name, traits in _IMPLEMENTATIONS.items() if traits.reference)
SLOW = frozenset(name for name, traits in _IMPLEMENTATIONS.items() if traits.slow)
PEERS = frozenset(name for name, traits in _IMPLEMENTATIONS.items() if traits.peer)


class Backend(abc.ABC):
    """A forward pass built from validated weight arrays (``cnnbench.network.weights`` layouts)."""

    name: str
    #: seconds spent compiling at load, or loading numba's cached code; None where nothing compiles
    compile_s: float | None = None

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        """Subclasses build their forward pass, then call this."""
        self.architecture = architecture

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 images ``(N, C, H, W)`` -> float32 logits ``(N, classes)``, a fresh array."""
        return self._forward(check_input(x, self.architecture))

    @abc.abstractmethod
    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a checked, C-contiguous float32 batch."""

    def stages(self) -> list[tuple[str, Stage]]:
        """The forward pass split by layer: one (layer name, function) per architecture layer, ReLU
        inside its layer, flatten inside the first linear layer. Applied in order they compute
        exactly what ``predict`` computes, bit for bit: the first takes ``predict``'s input
        (checked the same way), the last returns its logits; in between each passes the next its
        own intermediate layout. NotImplementedError where a backend cannot be split so."""
        (name, first), *rest = self._stages()
        return [(name, lambda x: first(check_input(x, self.architecture))), *rest]

    def _stages(self) -> list[tuple[str, Stage]]:
        """``stages`` for a checked batch."""
        raise NotImplementedError(f"{self.name} has no per-layer stages")


def check_input(x: np.ndarray, architecture: Architecture) -> np.ndarray:
    """Return ``x`` C-contiguous, or raise ValueError naming the expected shape and dtype."""
    if not isinstance(x, np.ndarray):
        problem = type(x).__name__
    elif x.dtype != np.float32:
        problem = f"dtype {x.dtype}"
    elif x.shape[1:] != architecture.input_shape or len(x) == 0:
        problem = f"shape {x.shape}"
    else:
        return np.ascontiguousarray(x)
    shape = ", ".join(map(str, architecture.input_shape))
    raise ValueError(f"expected a float32 array of shape (N, {shape}) with N >= 1, got {problem}")


def load(name: str, weights_path: str | Path, architecture: Architecture) -> Backend:
    """The backend ``name`` (one of NAMES) holding the weights in ``weights_path``, which must
    be of ``architecture``."""
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    arrays = load_weights(weights_path, architecture)
    module = importlib.import_module(module_name(name))
    return getattr(module, _IMPLEMENTATIONS[name].cls)(arrays, architecture)


def module_name(name: str) -> str:
    """The module implementing backend ``name`` (imported only by ``load``)."""
    return f"{__name__}.{_IMPLEMENTATIONS[name].module}"
