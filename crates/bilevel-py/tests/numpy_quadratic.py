"""The quadratic bilevel problem written in numpy, as a Python objective for `CustomProblem`:
shared by the tests and by bench/overhead.py."""

import numpy as np

DX, DY = 5, 4


def factors(rng, n):
    # r_i, w_i, a_i in y-space and k_i, u_i, c_i in x-space; r_i scaled so H = mean r r^T is
    # well conditioned (strongly convex inner problem).
    return {
        "r": rng.normal(size=(n, DY)) + 0.5,
        "k": 0.3 * rng.normal(size=(n, DX)),
        "u": 0.3 * rng.normal(size=(n, DX)),
        "w": 0.3 * rng.normal(size=(n, DY)),
        "a": rng.normal(size=(n, DY)),
        "c": rng.normal(size=(n, DX)),
    }


class NumpyQuadratic:
    """q_i(x, y) = (r_i.y)^2/2 + (k_i.x)^2/2 + (u_i.x)(w_i.y) + a_i.y + c_i.x, averaged over the
    batch (all samples when batch is None)."""

    def __init__(self, level, products=True):
        self.f = level
        if not products:
            # Leave the second-order products to bilevel's finite differences.
            self.hvp_yy = None
            self.cross_xy = None
            self.cross_yx = None

    def rows(self, batch):
        return {k: (v if batch is None else v[batch]) for k, v in self.f.items()}

    def value(self, x, y, batch):
        f = self.rows(batch)
        ry, kx, ux, wy = f["r"] @ y, f["k"] @ x, f["u"] @ x, f["w"] @ y
        return float(np.mean(0.5 * ry**2 + 0.5 * kx**2 + ux * wy + f["a"] @ y + f["c"] @ x))

    def grad_x(self, x, y, batch):
        f = self.rows(batch)
        n = f["k"].shape[0]
        return (f["k"].T @ (f["k"] @ x) + f["u"].T @ (f["w"] @ y) + f["c"].sum(0)) / n

    def grad_y(self, x, y, batch):
        f = self.rows(batch)
        n = f["r"].shape[0]
        return (f["r"].T @ (f["r"] @ y) + f["w"].T @ (f["u"] @ x) + f["a"].sum(0)) / n

    def hvp_yy(self, x, y, v, batch):
        f = self.rows(batch)
        return f["r"].T @ (f["r"] @ v) / f["r"].shape[0]

    def cross_xy(self, x, y, v, batch):
        f = self.rows(batch)
        return f["u"].T @ (f["w"] @ v) / f["u"].shape[0]

    def cross_yx(self, x, y, u, batch):
        f = self.rows(batch)
        return f["w"].T @ (f["u"] @ u) / f["w"].shape[0]


def pair(seed=0, n_outer=30, n_inner=20):
    rng = np.random.default_rng(seed)
    return factors(rng, n_outer), factors(rng, n_inner)
