"""Python objectives (CustomProblem): the quadratic written in numpy gives the built-in
quadratic's iterates on the same factors; finite-difference fallbacks, callback errors."""

import math

import numpy as np
import pytest

import bilevel

from numpy_quadratic import DX, DY, NumpyQuadratic, pair


@pytest.mark.parametrize("solver", ["soba", "saba", "stocbio", "fsla", "mrbo", "aid_cg", "srba", "amigo"])
def test_numpy_quadratic_gives_the_builtin_iterates(solver):
    outer, inner = pair()
    x0 = np.full(DX, -0.5)
    builtin = bilevel.QuadraticFromFactors(outer, inner, x0=x0)
    custom = bilevel.CustomProblem(NumpyQuadratic(outer), NumpyQuadratic(inner), DX, DY,
                                   n_outer=30, n_inner=20, x0=x0)
    a = bilevel.solve(builtin, solver, max_iters=40, seed=4, batch_size=8)  \
        if "batch_size" in bilevel.solvers()[[s["name"] for s in bilevel.solvers()].index(solver)]["parameters"] \
        else bilevel.solve(builtin, solver, max_iters=40, seed=4)
    b = bilevel.solve(custom, solver, max_iters=40, seed=4, **a.params)
    assert a.status == b.status == "done"
    # numpy's and the kernels' summation orders differ, so equality holds to rounding: 1e-12
    # relative to the iterate's scale over 40 iterations of a contraction.
    scale = max(1.0, np.abs(a.x).max(), np.abs(a.y).max())
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(b.y, a.y, rtol=0, atol=1e-12 * scale)
    # Every oracle is exact (no finite differences), so the calls match one for one.
    assert b.counts == a.counts
    assert b.counts["g"].get("fd_products", 0) == 0


def test_missing_products_fall_back_to_finite_differences_counted_as_gradients():
    outer, inner = pair(1)
    exact = bilevel.CustomProblem(NumpyQuadratic(outer), NumpyQuadratic(inner), DX, DY, 30, 20)
    fd = bilevel.CustomProblem(NumpyQuadratic(outer, products=False),
                               NumpyQuadratic(inner, products=False), DX, DY, 30, 20)
    a = bilevel.solve(exact, "soba", max_iters=30, seed=0, batch_size=5)
    b = bilevel.solve(fd, "soba", max_iters=30, seed=0, batch_size=5)
    # Central differences of a quadratic are exact up to rounding of the step (~1e-8 relative).
    np.testing.assert_allclose(b.x, a.x, rtol=1e-6, atol=1e-6)
    g = b.counts["g"]
    # One hvp_yy and one cross_xy per iteration, except the first: SOBA's v starts at 0, and a
    # product along a zero direction is 0 without any gradient call (counted as one product).
    assert g["fd_products"] == 2 * 29
    assert g["hvp_yy"] == 1 and g["cross_xy"] == 1
    # Each product was counted as the two gradient calls it made.
    assert g["grad_y"] == a.counts["g"]["grad_y"] + 2 * 29
    assert g["grad_x"] == 2 * 29


def test_newton_reference_gives_exact_metrics():
    outer, inner = pair(2)
    builtin = bilevel.QuadraticFromFactors(outer, inner)
    custom = bilevel.CustomProblem(NumpyQuadratic(outer), NumpyQuadratic(inner), DX, DY, 30, 20,
                                   newton_reference=True)
    x = np.linspace(-1, 1, DX)
    y = np.zeros(DY)
    exact = builtin.metrics(x, y)
    newton = custom.metrics(x, y)
    assert math.isclose(newton["value"], exact["value"], rel_tol=1e-9)
    assert math.isclose(newton["hypergrad_norm_sq"], exact["hypergrad_norm_sq"], rel_tol=1e-7)


class Boom(NumpyQuadratic):
    def __init__(self, level, after):
        super().__init__(level)
        self.calls = 0
        self.after = after

    def grad_y(self, x, y, batch):
        self.calls += 1
        if self.calls > self.after:
            raise ZeroDivisionError("boom in grad_y")
        return super().grad_y(x, y, batch)


def test_an_exception_in_a_callback_stops_the_run_and_is_raised():
    outer, inner = pair(3)
    boom = Boom(inner, after=10)
    problem = bilevel.CustomProblem(NumpyQuadratic(outer), boom, DX, DY, 30, 20)
    with pytest.raises(ZeroDivisionError, match="boom in grad_y"):
        bilevel.solve(problem, "soba", max_iters=10_000, seed=0)
    # The run stopped at the next iteration, not after 10,000.
    assert boom.calls < 40
    # The problem is usable again: the error does not stick to the next run.
    boom.after = 10**9
    assert bilevel.solve(problem, "soba", max_iters=5).status == "done"


class WrongShape(NumpyQuadratic):
    def grad_y(self, x, y, batch):
        return np.zeros(DY + 1)


def test_a_wrong_shape_from_a_callback_names_the_method():
    outer, inner = pair(4)
    problem = bilevel.CustomProblem(NumpyQuadratic(outer), WrongShape(inner), DX, DY, 30, 20)
    with pytest.raises(ValueError, match=r"inner\.grad_y returned 5 values, expected 4"):
        bilevel.solve(problem, "soba", max_iters=5)


def test_objects_without_the_required_methods_are_refused():
    outer, inner = pair(5)

    class NoGradX:
        def grad_y(self, x, y, batch):
            return np.zeros(DY)

    with pytest.raises(TypeError, match="grad_x"):
        bilevel.CustomProblem(NumpyQuadratic(outer), NoGradX(), DX, DY)

    class NoValue(NumpyQuadratic):
        value = None

    with pytest.raises(TypeError, match="value"):
        bilevel.CustomProblem(NoValue(outer), NumpyQuadratic(inner), DX, DY)


def test_fused_is_used_when_present():
    outer, inner = pair(6)

    class Fused(NumpyQuadratic):
        fused_calls = 0

        def fused(self, x, y, v, batch, wanted):
            Fused.fused_calls += 1
            out = {}
            for name in wanted:
                if name == "value":
                    out[name] = self.value(x, y, batch)
                elif name in ("grad_x", "grad_y"):
                    out[name] = getattr(self, name)(x, y, batch)
                else:
                    out[name] = getattr(self, name)(x, y, v, batch)
            return out

    plain = bilevel.CustomProblem(NumpyQuadratic(outer), NumpyQuadratic(inner), DX, DY, 30, 20)
    fused = bilevel.CustomProblem(Fused(outer), Fused(inner), DX, DY, 30, 20)
    a = bilevel.solve(plain, "soba", max_iters=20, seed=1, batch_size=4)
    b = bilevel.solve(fused, "soba", max_iters=20, seed=1, batch_size=4)
    np.testing.assert_array_equal(a.x, b.x)
    assert Fused.fused_calls > 0
