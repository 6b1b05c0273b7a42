"""The network: its architecture (every layer's shape) and what is built from it: the PyTorch
reference model, the ONNX graph, the exported weights format and its manifest."""
