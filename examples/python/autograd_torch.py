"""Deep hyper-representation with every derivative from PyTorch's autograd (`torch.func`): the
outer variable is a neural network's hidden layer, the inner problem fits a ridge head on its
features, and bilevel's solvers learn the layer so that the fitted head does well on held-out
rows (the problem: `hyperrep_common.py`; the same with JAX: `autograd_jax.py`).

    pip install ./crates/bilevel-py torch
    python examples/python/autograd_torch.py

This is the escape hatch for any model: write the two losses as torch functions of (x, y) and a
batch of rows, and hand bilevel their gradients and second-order products: `torch.func.grad`
for the gradients, and `torch.func.jvp` of a gradient (forward over reverse) for the
Hessian-vector product and the cross products. bilevel computes in float64, so the tensors are
float64 too. (PyPI's default torch wheel brings the CUDA libraries along, about 5 GB; the CPU is
all this needs.)

Output here: random representation F(x) = 0.4012, test MSE 0.4223; SOBA (4000 iterations)
F(x) = 0.0095, test MSE 0.2140 in 27 s; AID-CG (200 iterations) F(x) = 0.0728, test MSE 0.1631
in 8.5 s: the JAX version's numbers, at about 10x its time (eager `torch.func` costs about
1 ms per call on these small tensors, jitted JAX about 0.1 ms).
"""

import numpy as np
import torch
from torch.func import grad, jvp

import bilevel
from hyperrep_common import DIM_X, DIM_Y, FEATURES, HIDDEN, RIDGE, best_head, make_data, run_and_report

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)  # small products: one thread is fastest, and bilevel runs one step at a time

(a_train, b_train), (a_val, b_val), (a_test, b_test), x0 = make_data()
train = torch.from_numpy(a_train), torch.from_numpy(b_train)
validation = torch.from_numpy(a_val), torch.from_numpy(b_val)
test = torch.from_numpy(a_test), torch.from_numpy(b_test)


def representation(x, a):
    return torch.tanh(a @ x[: FEATURES * HIDDEN].reshape(FEATURES, HIDDEN) + x[FEATURES * HIDDEN:])


def mse(x, y, rows, batch):
    a, b = rows
    if batch is not None:
        a, b = a[batch], b[batch]
    return 0.5 * torch.mean((representation(x, a) @ y[:-1] + y[-1] - b) ** 2)


def inner_loss(x, y, batch):
    return mse(x, y, train, batch) + 0.5 * RIDGE * torch.sum(y[:-1] ** 2)


def outer_loss(x, y, batch):
    return mse(x, y, validation, batch)


class TorchObjective:
    """bilevel's callback interface over one torch loss h(x, y, batch). `batch` is an int64
    index array (a minibatch, the mean over its rows) or None (all rows)."""

    def __init__(self, loss):
        self.loss = loss
        self.grad_x_fn = grad(loss, argnums=0)
        self.grad_y_fn = grad(loss, argnums=1)

    @staticmethod
    def _in(*arrays):
        return [torch.from_numpy(np.asarray(a)) for a in arrays]

    @staticmethod
    def _batch(batch):
        return None if batch is None else torch.from_numpy(batch)

    def value(self, x, y, batch):
        x, y = self._in(x, y)
        return float(self.loss(x, y, self._batch(batch)))

    def grad_x(self, x, y, batch):
        x, y = self._in(x, y)
        return self.grad_x_fn(x, y, self._batch(batch)).numpy()

    def grad_y(self, x, y, batch):
        x, y = self._in(x, y)
        return self.grad_y_fn(x, y, self._batch(batch)).numpy()

    def hvp_yy(self, x, y, v, batch):
        # d/dt grad_y(x, y + t v) = (d2h/dy2) v.
        x, y, v = self._in(x, y, v)
        b = self._batch(batch)
        return jvp(lambda yy: self.grad_y_fn(x, yy, b), (y,), (v,))[1].numpy()

    def cross_xy(self, x, y, v, batch):
        # (d2h/dx dy) v = d/dt grad_x(x, y + t v).
        x, y, v = self._in(x, y, v)
        b = self._batch(batch)
        return jvp(lambda yy: self.grad_x_fn(x, yy, b), (y,), (v,))[1].numpy()

    def cross_yx(self, x, y, u, batch):
        # (d2h/dy dx) u = d/dt grad_y(x + t u, y).
        x, y, u = self._in(x, y, u)
        b = self._batch(batch)
        return jvp(lambda xx: self.grad_y_fn(xx, y, b), (x,), (u,))[1].numpy()


problem = bilevel.CustomProblem(
    TorchObjective(outer_loss), TorchObjective(inner_loss), dim_x=DIM_X, dim_y=DIM_Y,
    n_outer=len(b_val), n_inner=len(b_train), x0=x0, y0=np.zeros(DIM_Y),
    name="hyper_representation", newton_reference=True,
)


def head_of(x):
    with torch.no_grad():
        features = representation(torch.from_numpy(np.asarray(x)), train[0]).numpy()
    return best_head(features, (a_train, b_train))


def test_mse(x):
    with torch.no_grad():
        return float(mse(torch.from_numpy(np.asarray(x)), torch.from_numpy(head_of(x)), test, None))


run_and_report(problem, x0, head_of, test_mse)
