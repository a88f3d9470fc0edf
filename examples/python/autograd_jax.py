"""Deep hyper-representation with every derivative from JAX's autograd: the outer variable is a
neural network's hidden layer, the inner problem fits a ridge head on its features, and bilevel's
solvers learn the layer so that the fitted head does well on held-out rows.

    pip install ./crates/bilevel-py jax
    python examples/python/autograd_jax.py

This is the escape hatch for any model: write the two losses as JAX functions of (x, y) and a
batch of rows, and hand bilevel their gradients and second-order products (a Hessian-vector
product and the cross products, forward-over-reverse). Here:

    inner  g(x, y) = mean over training rows of (head_y(phi_x(a_i)) - b_i)^2 / 2 + 0.1 |w|^2 / 2
    outer  f(x, y) = mean over validation rows of (head_y(phi_x(a_i)) - b_i)^2 / 2

phi_x(a) = tanh(a W + c) with x = (W, c), 20 inputs and 16 hidden units (336 outer variables);
head_y(h) = h.w + w0 with y = (w, w0). The inner problem is strongly convex in y, as the theory
of every hypergradient solver here assumes; the outer one is a non-convex network. The data are
a noisy non-linear function of 4 of the 20 inputs, with 100 training and 400 validation rows;
test MSE is on 5,000 fresh rows, with the head refitted exactly on the training rows.

The same problem with PyTorch's `torch.func`: `autograd_torch.py`.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import bilevel

jax.config.update("jax_enable_x64", True)  # bilevel computes in float64

FEATURES, HIDDEN, RIDGE = 20, 16, 0.1
rng = np.random.default_rng(0)


def make_rows(n):
    a = rng.normal(size=(n, FEATURES))
    b = np.sin(a[:, 0]) + 0.5 * a[:, 1] * a[:, 2] - 0.5 * a[:, 3] + 0.1 * rng.normal(size=n)
    return jnp.asarray(a), jnp.asarray(b)


train, validation, test = make_rows(100), make_rows(400), make_rows(5000)
DIM_X = FEATURES * HIDDEN + HIDDEN  # the representation: first-layer weights and biases
DIM_Y = HIDDEN + 1  # the head: weights and intercept


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


x0 = np.concatenate([rng.normal(size=FEATURES * HIDDEN) / np.sqrt(FEATURES), np.zeros(HIDDEN)])
problem = bilevel.CustomProblem(
    JaxObjective(outer_loss), JaxObjective(inner_loss), dim_x=DIM_X, dim_y=DIM_Y,
    n_outer=validation[1].shape[0], n_inner=train[1].shape[0], x0=x0, y0=np.zeros(DIM_Y),
    name="hyper_representation", newton_reference=True,
)


def best_head(x):
    """y*(x): the ridge head on the training rows, solved exactly (it is linear least squares)."""
    a, b = train
    phi = np.column_stack([np.asarray(representation(jnp.asarray(x), a)), np.ones(len(b))])
    penalty = RIDGE * len(b) * np.diag(np.r_[np.ones(HIDDEN), 0.0])
    return np.linalg.solve(phi.T @ phi + penalty, phi.T @ np.asarray(b))


def test_mse(x):
    return float(mse(jnp.asarray(x), jnp.asarray(best_head(x)), test, None))


print(f"random representation, best head: validation loss F(x) = "
      f"{problem.metrics(x0, best_head(x0))['value']:.4f}, test MSE {test_mse(x0):.4f}")

runs = {
    # Single loop, stochastic: one step each on y, on the linear system and on x, per minibatch.
    "soba": dict(batch_size=32, inner_lr=0.2, outer_lr=0.5),
    # Deterministic: inner gradient steps, then conjugate gradients on the linear system.
    "aid_cg": dict(inner_steps=20, inner_lr=0.5, cg={"max_iters": 10}, outer_lr=0.5),
}
budget = {"soba": 4000, "aid_cg": 200}
for solver, params in runs.items():
    started = time.perf_counter()
    result = bilevel.solve(problem, solver, max_iters=budget[solver], eval_every=budget[solver] // 4,
                           seed=0, **params)
    elapsed = time.perf_counter() - started
    print(f"{solver:>7}: {result.status} after {result.iters} iterations ({elapsed:.1f} s, "
          f"{result.oracle_calls} oracle calls): validation loss F(x) = "
          f"{result.final_metrics['value']:.4f}, test MSE {test_mse(result.x):.4f}")
