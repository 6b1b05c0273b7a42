"""NumPy-only layers of the network, in two variants, and the whole network forward/backward.

All image arrays are NCHW, weights in PyTorch layout; every op returns the input's dtype
(float32 in, float32 out; float64 in, float64 out), and all array arguments must share it.
Bad shapes, dtypes or geometry raise ``ValueError`` naming the argument.

Convolution (cross-correlation, as ``torch.nn.functional.conv2d``), Hout = (H + 2p - kh) // s + 1:
    conv2d_loops(x, w, b, stride=1, padding=0) -> y (N, O, Hout, Wout)     scalar Python loops
    conv2d_im2col(x, w, b, stride=1, padding=0) -> y                      im2col + one matmul
    conv2d_backward_loops(dy, x, w, stride=1, padding=0, input_gradient=True) -> (dx, dw, db)
    conv2d_backward_im2col(dy, x, w, stride=1, padding=0, cols=None, input_gradient=True,
        parameter_gradients=True) -> (dx, dw, db); a flag False: those are None, not computed
    conv2d_im2col_with_columns(x, w, b, stride=1, padding=0) -> (y, {"cols": x's column matrix})
        the forward's column matrix, for the backward to reuse (``cols``) rather than rebuild
    im2col(x, kh, kw, stride=1, padding=0) -> cols (C*kh*kw, N*Hout*Wout)  building blocks
    col2im(cols, x_shape, kh, kw, stride=1, padding=0) -> dx (adds overlapping windows)
Pooling (as torch.nn.functional.max_pool2d / avg_pool2d: kernel an int or (kh, kw), stride None =
the kernel, padding <= kernel // 2; max pads with -inf, avg counts padding as zeros in kh*kw):
    maxpool2d_loops(x, kernel, stride=None, padding=0) -> y (N, C, Hout, Wout)   scalar loops
    maxpool2d_strided(x, kernel, stride=None, padding=0) -> y          one op per kernel offset
    maxpool2d_backward_loops(dy, x, kernel, stride=None, padding=0) -> dx  (and _strided)
    maxpool2d_indices(x, kernel, stride=None, padding=0) -> flat index in H*W of each winner
    avgpool2d_loops / avgpool2d_strided, avgpool2d_backward_loops / _strided: the same for average
    Both variants equal torch bit for bit in float64, ties included (the first largest value of a
    window in row-major order wins, a NaN always; see ``cnnbench.ops.pool``).
Linear (w is (out, in)), ReLU, loss (over the last axis; labels are class indices):
    linear(x, w, b), linear_loops(x, w, b) -> y (N, out)
    linear_backward(dy, x, w, input_gradient=True, parameter_gradients=True) -> (dx, dw, db)
    linear_backward_loops(dy, x, w) -> (dx, dw, db)
    relu(x, out=None), relu_backward(dy, x, out=None)  (x: the ReLU's input or output)
    softmax(z), log_softmax(z), cross_entropy(logits, labels) -> mean loss,
    cross_entropy_backward(logits, labels) -> dlogits
Network (variant "loops" or "im2col"; ``architecture`` from ``cnnbench.network.architecture``,
weights from ``cnnbench.network.weights.load_weights(path, architecture)``):
    net = Network(arrays, architecture, variant="im2col", dtype=np.float32)  # or Network.from_file
    logits, cache = net.forward(x);  grads = net.backward(cache, dlogits)
    loss, grads = net.loss_and_gradients(x, labels)  # grads: every parameter name, and "input"
        (input_gradient=False, as training: no "input", and the first layer's dx not computed)
    net.backward(cache, dlogits, input_gradient, defer=f): each layer's parameter gradients
        handed over as f(compute) instead, for another thread (the NumPy trainer at 2 threads)
    net.stages() -> [(layer name, function of the layer's input)];  net.kinks(cache)
    Any architecture: conv, max and average pooling (im2col variant: the strided pooling), linear.
Optimiser (NumPy; arithmetic as torch.optim.Adam's, torch's defaults):
    opt = Adam(net.parameters, lr=1e-3);  opt.step(grads)  # updates net.parameters in place
    step = opt.begin_step();  opt.update(name, grad, step)   # the same, one parameter at a time
Inference-tuned im2col forward (NHWC buffers reused across calls; the numpy_im2col backend):
    Im2colInference(arrays, architecture).logits(x) -> float32 logits (N, classes); .stages(): per layer

Example (the README's worked example)::

    >>> import numpy as np
    >>> from cnnbench.ops import conv2d_im2col, conv2d_loops
    >>> x = np.arange(1, 33, dtype=float).reshape(1, 2, 4, 4)
    >>> conv2d_im2col(x, np.ones((2, 2, 2, 2)), np.array([1.0, 2.0]), stride=2)
    array([[[[ 93., 109.],
             [157., 173.]],
    <BLANKLINE>
            [[ 94., 110.],
             [158., 174.]]]])
    >>> np.array_equal(conv2d_loops(x, np.ones((2, 2, 2, 2)), np.array([1.0, 2.0]), stride=2),
    ...                conv2d_im2col(x, np.ones((2, 2, 2, 2)), np.array([1.0, 2.0]), stride=2))
    True

Ties in max pooling: both overlapping windows hold two 2s; each picks its first (row-major), so
the top 2 gets both gradients::

    >>> from cnnbench.ops import maxpool2d_backward_strided, maxpool2d_strided
    >>> x = np.array([[[[0.0, 2.0, 1.0], [2.0, 1.0, 2.0]]]])
    >>> maxpool2d_strided(x, 2, stride=1)
    array([[[[2., 2.]]]])
    >>> maxpool2d_backward_strided(np.ones((1, 1, 1, 2)), x, 2, stride=1)
    array([[[[0., 2., 0.],
             [0., 0., 0.]]]])
"""

from cnnbench.ops.im2col import (
    col2im,
    conv2d_backward_im2col,
    conv2d_im2col,
    conv2d_im2col_with_columns,
    im2col,
)
from cnnbench.ops.im2col_inference import Im2colInference
from cnnbench.ops.layers import linear, linear_backward, relu, relu_backward
from cnnbench.ops.loops import (
    conv2d_backward_loops,
    conv2d_loops,
    linear_backward_loops,
    linear_loops,
)
from cnnbench.ops.losses import cross_entropy, cross_entropy_backward, log_softmax, softmax
from cnnbench.ops.network import INPUT_GRADIENT, VARIANTS, ForwardCache, Network, Variant
from cnnbench.ops.optim import Adam
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

__all__ = [
    "INPUT_GRADIENT",
    "VARIANTS",
    "Adam",
    "ForwardCache",
    "Im2colInference",
    "Network",
    "Variant",
    "avgpool2d_backward_loops",
    "avgpool2d_backward_strided",
    "avgpool2d_loops",
    "avgpool2d_strided",
    "col2im",
    "conv2d_backward_im2col",
    "conv2d_backward_loops",
    "conv2d_im2col",
    "conv2d_im2col_with_columns",
    "conv2d_loops",
    "cross_entropy",
    "cross_entropy_backward",
    "im2col",
    "linear",
    "linear_backward",
    "linear_backward_loops",
    "linear_loops",
    "log_softmax",
    "maxpool2d_backward_loops",
    "maxpool2d_backward_strided",
    "maxpool2d_indices",
    "maxpool2d_loops",
    "maxpool2d_strided",
    "relu",
    "relu_backward",
    "softmax",
]
