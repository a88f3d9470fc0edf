"""Deep hyper-representation with every derivative from JAX's autograd: the outer variable is a
neural network's hidden layer, the inner problem fits a ridge head on its features, and bilevel's
solvers learn the layer so that the fitted head does well on held-out rows (the problem:
`hyperrep_common.py`; the same with PyTorch: `autograd_torch.py`).

    pip install ./crates/bilevel-py jax
    python examples/python/autograd_jax.py

This is the escape hatch for any model: write the two losses as JAX functions of (x, y) and a
batch of rows, and hand bilevel their gradients and second-order products (a Hessian-vector
product and the cross products, forward-over-reverse). The inner problem is strongly convex in
y, as the theory of every hypergradient solver here assumes; the outer one is a non-convex
network.
"""

import jax
import jax.numpy as jnp
import numpy as np

import bilevel
from hyperrep_common import DIM_X, DIM_Y, FEATURES, HIDDEN, RIDGE, best_head, make_data, run_and_report

jax.config.update("jax_enable_x64", True)  # bilevel computes in float64

(a_train, b_train), (a_val, b_val), (a_test, b_test), x0 = make_data()
train = jnp.asarray(a_train), jnp.asarray(b_train)
validation = jnp.asarray(a_val), jnp.asarray(b_val)
test = jnp.asarray(a_test), jnp.asarray(b_test)


def representation(x, a):
    return jnp.tanh(a @ x[: FEATURES * HIDDEN].reshape(FEATURES, HIDDEN) + x[FEATURES * HIDDEN:])


def mse(x, y, rows, batch):
    a, b = rows
    if batch is not None:
        a, b = a[batch], b[batch]
    return 0.5 * jnp.mean((representation(x, a) @ y[:-1] + y[-1] - b) ** 2)


def inner_loss(x, y, batch):
    return mse(x, y, train, batch) + 0.5 * RIDGE * jnp.sum(y[:-1] ** 2)


def outer_loss(x, y, batch):
    return mse(x, y, validation, batch)


class JaxObjective:
    """bilevel's callback interface over one JAX loss h(x, y, batch). `batch` is an int64 index
    array (a minibatch, the mean over its rows) or None (all rows). Each function is compiled
    once per batch shape: one for the minibatches, one for the full objective."""

    def __init__(self, loss):
        grad_x = jax.grad(loss, argnums=0)
        grad_y = jax.grad(loss, argnums=1)
        self._value = jax.jit(loss)
        self._grad_x = jax.jit(grad_x)
        self._grad_y = jax.jit(grad_y)
        # Forward over reverse: d/dt grad_y(x, y + t v) = (d2h/dy2) v.
        self._hvp_yy = jax.jit(lambda x, y, v, batch: jax.jvp(
            lambda yy: grad_y(x, yy, batch), (y,), (v,))[1])
        # (d2h/dx dy) v = d/dt grad_x(x, y + t v).
        self._cross_xy = jax.jit(lambda x, y, v, batch: jax.jvp(
            lambda yy: grad_x(x, yy, batch), (y,), (v,))[1])
        # (d2h/dy dx) u = d/dt grad_y(x + t u, y).
        self._cross_yx = jax.jit(lambda x, y, u, batch: jax.jvp(
            lambda xx: grad_y(xx, y, batch), (x,), (u,))[1])

    def value(self, x, y, batch):
        return float(self._value(x, y, batch))

    def grad_x(self, x, y, batch):
        return np.asarray(self._grad_x(x, y, batch))

    def grad_y(self, x, y, batch):
        return np.asarray(self._grad_y(x, y, batch))

    def hvp_yy(self, x, y, v, batch):
        return np.asarray(self._hvp_yy(x, y, v, batch))

    def cross_xy(self, x, y, v, batch):
        return np.asarray(self._cross_xy(x, y, v, batch))

    def cross_yx(self, x, y, u, batch):
        return np.asarray(self._cross_yx(x, y, u, batch))


problem = bilevel.CustomProblem(
    JaxObjective(outer_loss), JaxObjective(inner_loss), dim_x=DIM_X, dim_y=DIM_Y,
    n_outer=len(b_val), n_inner=len(b_train), x0=x0, y0=np.zeros(DIM_Y),
    name="hyper_representation", newton_reference=True,
)


def head_of(x):
    return best_head(np.asarray(representation(jnp.asarray(x), train[0])), (a_train, b_train))


def test_mse(x):
    return float(mse(jnp.asarray(x), jnp.asarray(head_of(x)), test, None))


run_and_report(problem, x0, head_of, test_mse)
