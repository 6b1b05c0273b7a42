"""Where the time goes: each backend's seconds per image in every layer of the architecture, beside
its whole forward pass timed the usual way (``predict``, clock around the call only).

A layer's time includes its ReLU; flatten (a copy or a view) counts where the backend does it,
in the last feature layer or the first linear one. How each backend is split (``METHODS``):

- the hand-written backends (numpy_im2col, numba_loops, numpy_loops): ``Backend.stages()``, one
  callable per layer, applied in order, each timed on its own (their own code, split by them);
- torch: a forward pre-hook on every layer's module: a layer runs from its module's start to the
  next one's (ReLU and flatten between them), the last to the end of the forward pass;
- onnxruntime: ONNX Runtime's own profiler, per node; fused and rewritten nodes keep the layer's
  name among their words ("conv1_nchwc", "fused fc1.gemm"); nodes ONNX Runtime inserts (layout
  reorders) count in the layer before them (before the first layer: in it).

Medians over passes, per image, split passes alternating with usual ones. A backend that offers
none of these is left out (``measure`` names it).
"""

from __future__ import annotations

import collections
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

from cnnbench import backends
from cnnbench.network.architecture import Architecture

METHODS = {
    "stages": "Backend.stages(): each layer's callable timed on its own",
    "torch": "forward pre-hooks on each layer's module (ReLU and flatten in the layer before)",
    "onnxruntime": "ONNX Runtime's profiler, per node (inserted reorders in the layer before)",
}
clock = time.perf_counter


def method_of(backend: backends.Backend) -> str | None:
    """The METHODS key that splits ``backend`` by layer, or None. The peer and the reference are
    split by their own profiling (torch's stages would time eager calls outside its model)."""
    if backend.name in ("torch", "onnxruntime"):
        return backend.name
    try:
        backend.stages()
    except NotImplementedError:
        return None
    return "stages"


SPLITTERS = {}  # METHODS key -> function(backend, x, passes) -> [{layer: seconds}] per pass


def layer_and_forward_seconds(
    backend: backends.Backend, x: np.ndarray, passes: int, blocks: int = 3
) -> tuple[dict[str, float], float]:
    """Median seconds per image of each layer (architecture order) over forward passes of the
    whole batch ``x`` split by layer, and of the whole forward pass the usual way (``predict``;
    batch 1: each image on its own). ``blocks`` alternations of ``passes`` split passes (after
    an untimed one) and ``passes`` usual ones, so a change in machine load hits both alike."""
    split = SPLITTERS[method_of(backend)]
    backend.predict(x[:1])
    samples, whole = [], []
    for _ in range(blocks):
        samples += split(backend, x, passes + 1)[1:]  # the first pass warms up
        for _ in range(passes):
            for i in range(len(x)) if backend.name in backends.SLOW else (None,):
                batch = x if i is None else x[i : i + 1]
                started = clock()
                backend.predict(batch)
                whole.append((clock() - started) / len(batch))
    names = [layer.name for layer in backend.architecture.layers]
    layers = {name: statistics.median(s.get(name, 0.0) for s in samples) / len(x) for name in names}
    return layers, statistics.median(whole)


def stage_seconds(
    stages: list[tuple[str, Callable[[np.ndarray], np.ndarray]]], x: np.ndarray, timer=None
) -> dict[str, float]:
    """Seconds of each stage in one pass of batch ``x`` through ``stages``, each timed alone."""
    timer = timer or clock
    times, h = {}, x
    for name, stage in stages:
        started = timer()
        h = stage(h)
        times[name] = timer() - started
    return times


def _stages(backend, x, passes) -> list[dict[str, float]]:
    stages = backend.stages()
    return [stage_seconds(stages, x) for _ in range(passes)]


class _Timeline:
    """Start times of the layers, in the order they ran, and the end of the pass."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        self.marks.append((name, clock()))

    def durations(self) -> dict[str, float]:
        """Each mark to the next; the last mark is the end of the pass."""
        return {
            name: after - before
            for (name, before), (_, after) in zip(self.marks, self.marks[1:], strict=False)
        }


def _torch(backend, x, passes) -> list[dict[str, float]]:
    import torch

    timeline = _Timeline()
    model = backend.model
    handles = [
        getattr(model, layer.name).register_forward_pre_hook(
            lambda _module, _inputs, name=layer.name: timeline.mark(name)
        )
        for layer in backend.architecture.layers
    ]
    samples = []
    try:
        tensor = torch.from_numpy(x)
        for _ in range(passes):
            timeline.marks.clear()
            with torch.inference_mode():
                model(tensor)
            timeline.mark("end")
            samples.append(timeline.durations())
    finally:
        for handle in handles:
            handle.remove()
    return samples


def _onnxruntime(backend, x, passes) -> list[dict[str, float]]:
    import onnxruntime

    from cnnbench.backends.onnxruntime_peer import session_options
    from cnnbench.network.onnx_export import INPUT_NAME, OUTPUT_NAME

    with tempfile.TemporaryDirectory() as folder:
        options = session_options()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = onnxruntime.InferenceSession(
            backend.model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        for _ in range(passes):
            session.run([OUTPUT_NAME], {INPUT_NAME: x})
        with open(session.end_profiling()) as stream:
            events = json.load(stream)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = [
        e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
    ]
    samples = []
    for run in runs:
        start, end = run["ts"], run["ts"] + run["dur"]
        inside = sorted((e for e in nodes if start <= e["ts"] <= end), key=lambda e: e["ts"])
        times: dict[str, float] = collections.defaultdict(float)
        pending = 0.0  # inserted nodes before the first named one: counted in its layer
        last = None
        for event in inside:
            name = _layer_of(event["name"].removesuffix("_kernel_time"), backend.architecture)
            seconds = event["dur"] * 1e-6
            if name is None and last is None:
                pending += seconds
            else:
                last = name or last
                times[last] += seconds + pending
                pending = 0.0
        samples.append(dict(times))
    return samples


SPLITTERS.update(stages=_stages, torch=_torch, onnxruntime=_onnxruntime)


def _layer_of(node: str, architecture: Architecture) -> str | None:
    """The layer an ONNX Runtime node belongs to: the first layer name among its words
    ("conv1_nchwc", "fused fc1.gemm"; "flatten" is the first linear layer's), else None."""
    if node == "flatten":
        return architecture.linear_layers[0].name
    names = {layer.name for layer in architecture.layers}
    return next((word for word in re.split(r"[^A-Za-z0-9]+", node) if word in names), None)


def measure(
    names: list[str],
    weights,
    architecture: Architecture,
    x: np.ndarray,
    batches: dict[str, list[tuple[int, int]]],
) -> tuple[list[dict], list[str]]:
    """Rows {backend, batch_size, layer, seconds, forward_s, method} for every backend that can
    be split, at each of its (batch size, passes per block), and the names of those that cannot."""
    rows, unsplit = [], []
    for name in names:
        backend = backends.load(name, weights, architecture)
        method = method_of(backend)
        if method is None:
            unsplit.append(name)
            continue
        for size, passes in batches[name]:
            layers, whole = layer_and_forward_seconds(backend, x[:size], passes)
            rows += [
                {
                    "backend": name,
                    "batch_size": size,
                    "layer": layer,
                    "seconds": seconds,
                    "forward_s": whole,
                    "method": METHODS[method],
                }
                for layer, seconds in layers.items()
            ]
    return rows, unsplit
