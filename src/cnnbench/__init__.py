"""cnnbench: how a small CNN really computes, checked against PyTorch on real MNIST."""

__version__ = "0.1.0"
