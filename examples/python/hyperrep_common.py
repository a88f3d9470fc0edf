"""The deep hyper-representation problem of `autograd_torch.py` and `autograd_jax.py`, apart
from the autograd code: the seeded data and start (numpy), the exact head y*(x), and the runs of
two solvers with their report. Both examples give the same numbers on the same data.

    inner  g(x, y) = mean over training rows of (head_y(phi_x(a_i)) - b_i)^2 / 2 + 0.1 |w|^2 / 2
    outer  f(x, y) = mean over validation rows of (head_y(phi_x(a_i)) - b_i)^2 / 2

phi_x(a) = tanh(a W + c) with x = (W, c), 20 inputs and 16 hidden units (336 outer variables);
head_y(h) = h.w + w0 with y = (w, w0). The data are a noisy non-linear function of 4 of the 20
inputs, with 100 training and 400 validation rows; test MSE is on 5,000 fresh rows, with the
head refitted exactly on the training rows.
"""

import time

import numpy as np

import bilevel

FEATURES, HIDDEN, RIDGE = 20, 16, 0.1
DIM_X = FEATURES * HIDDEN + HIDDEN  # the representation: first-layer weights and biases
DIM_Y = HIDDEN + 1  # the head: weights and intercept


def make_data(seed=0):
    """(train, validation, test, x0): three (inputs, targets) pairs of numpy arrays and the
    start, a random representation."""
    rng = np.random.default_rng(seed)

    def rows(n):
        a = rng.normal(size=(n, FEATURES))
        b = np.sin(a[:, 0]) + 0.5 * a[:, 1] * a[:, 2] - 0.5 * a[:, 3] + 0.1 * rng.normal(size=n)
        return a, b

    train, validation, test = rows(100), rows(400), rows(5000)
    x0 = np.concatenate([rng.normal(size=FEATURES * HIDDEN) / np.sqrt(FEATURES), np.zeros(HIDDEN)])
    return train, validation, test, x0


def best_head(features, train):
    """y*(x) for the features phi_x(a_train) (a numpy array): the ridge head on the training
    rows, solved exactly (it is linear least squares)."""
    b = train[1]
    phi = np.column_stack([features, np.ones(len(b))])
    penalty = RIDGE * len(b) * np.diag(np.r_[np.ones(HIDDEN), 0.0])
    return np.linalg.solve(phi.T @ phi + penalty, phi.T @ b)


def run_and_report(problem, x0, head_of, test_mse):
    """The start's F(x) and test MSE, then SOBA and AID-CG from it. `head_of(x)` is y*(x) and
    `test_mse(x)` the test MSE of the representation x with that head."""
    print(f"random representation, best head: validation loss F(x) = "
          f"{problem.metrics(x0, head_of(x0))['value']:.4f}, test MSE {test_mse(x0):.4f}")
    runs = {
        # Single loop, stochastic: one step each on y, on the linear system and on x, per minibatch.
        "soba": (4000, dict(batch_size=32, inner_lr=0.2, outer_lr=0.5)),
        # Deterministic: inner gradient steps, then conjugate gradients on the linear system.
        "aid_cg": (200, dict(inner_steps=20, inner_lr=0.5, cg={"max_iters": 10}, outer_lr=0.5)),
    }
    for solver, (iters, params) in runs.items():
        started = time.perf_counter()
        result = bilevel.solve(problem, solver, max_iters=iters, eval_every=iters // 4, seed=0,
                               **params)
        elapsed = time.perf_counter() - started
        print(f"{solver:>7}: {result.status} after {result.iters} iterations ({elapsed:.1f} s, "
              f"{result.oracle_calls} oracle calls): validation loss F(x) = "
              f"{result.final_metrics['value']:.4f}, test MSE {test_mse(result.x):.4f}")
