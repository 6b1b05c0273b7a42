"""onnxruntime: the production peer, not hand-written. ONNX Runtime's CPU execution provider runs
the network exported by ``cnnbench.network.onnx_export`` (the same bytes as ``results/model/model.onnx``,
built in memory from the weights), on 1 intra-op and 1 inter-op thread, sequential execution, all
graph optimisations on. It is what a user would deploy for CPU inference: the bar for the
hand-written backends.

The module is not named ``onnxruntime`` so that it does not shadow the library it imports.
"""

from __future__ import annotations

import numpy as np
import onnxruntime

from cnnbench.backends import Backend
from cnnbench.network.architecture import Architecture
from cnnbench.network.onnx_export import INPUT_NAME, OUTPUT_NAME, onnx_bytes


def session_options() -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        super().__init__(arrays, architecture)
        self.model_bytes = onnx_bytes(arrays, architecture)
        self.session = onnxruntime.InferenceSession(
            self.model_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )

    def _forward(self, x: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
        return logits
