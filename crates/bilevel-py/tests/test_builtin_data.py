"""Built-in problems on numpy and scipy.sparse data: LogRegHPO, DataCleaning, shipped data."""

import numpy as np
import pytest

import bilevel

sp = pytest.importorskip("scipy.sparse")


def sparse_classification(seed, n, d, classes=2, density=0.2):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=seed, dtype=np.float64)
    w = rng.normal(size=(d, classes))
    y = np.argmax(X @ w + 0.3 * rng.normal(size=(n, classes)), axis=1)
    if classes == 2:
        y = np.where(y == 1, 1.0, -1.0)
    return X, y


@pytest.mark.parametrize("classes, penalty", [(2, "per_feature"), (3, "per_class"), (2, "scalar")])
def test_logreg_hpo_gives_the_same_results_from_dense_and_sparse(classes, penalty):
    X, y = sparse_classification(0, 300, 12, classes)
    Xv, yv = sparse_classification(1, 200, 12, classes)
    sparse = bilevel.LogRegHPO(X, y, Xv, yv, penalty=penalty, seed=3)
    dense = bilevel.LogRegHPO(X.toarray(), y, Xv.toarray(), yv, penalty=penalty, seed=3)
    assert (sparse.dim_x, sparse.dim_y) == (dense.dim_x, dense.dim_y)
    x0s, y0s = sparse.start()
    x0d, y0d = dense.start()
    np.testing.assert_array_equal(x0s, x0d)
    np.testing.assert_array_equal(y0s, y0d)
    steps = dict(batch_size=16, outer_lr=2.0, inner_lr=0.5)
    a = bilevel.solve(sparse, "soba", max_iters=200, seed=1, eval_every=50, **steps)
    b = bilevel.solve(dense, "soba", max_iters=200, seed=1, eval_every=50, **steps)
    # The CSR and dense kernels sum the same products in different orders (they skip the
    # zeros), so the iterates agree to rounding, not bit for bit: 1e-10 relative over 200
    # steps of a contraction leaves ample room above the ~1e-15 per-step differences.
    np.testing.assert_allclose(a.x, b.x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.y, b.y, rtol=1e-10, atol=1e-12)
    for name in ("value", "hypergrad_norm_sq", "validation_accuracy"):
        assert np.isclose(a.final_metrics[name], b.final_metrics[name], rtol=1e-9), name
    assert a.counts == b.counts
    # The run improves on the exact outer objective F(x).
    assert a.final_metrics["value"] < a.trace[0]["value"]


@pytest.mark.parametrize("classes, dense", [(2, True), (3, False)])
def test_f32_storage_keeps_float32_data_exactly_and_rounds_float64_data(classes, dense):
    X, y = sparse_classification(5, 300, 12, classes)
    Xv, yv = sparse_classification(6, 200, 12, classes)
    if dense:
        X, Xv = X.toarray(), Xv.toarray()
    penalty = "per_feature" if classes == 2 else "per_class"
    steps = dict(batch_size=16, outer_lr=2.0, inner_lr=0.5, max_iters=100, seed=1, eval_every=50)

    def run(X, Xv, precision):
        problem = bilevel.LogRegHPO(X, y, Xv, yv, penalty=penalty, seed=3, precision=precision)
        return bilevel.solve(problem, "soba", **steps)

    # float32 data: f32 storage keeps every value, so the run is the f64 run bit for bit.
    X32, Xv32 = X.astype(np.float32), Xv.astype(np.float32)
    a = run(X32, Xv32, "f32")
    b = run(X32, Xv32, "f64")
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    # float64 data: f32 storage rounds it (relative change <= 2**-24 per value), so the run
    # moves, by about that much: 1e-5 relative over 100 contracting steps is ample.
    c = run(X, Xv, "f32")
    d = run(X, Xv, "f64")
    assert not np.array_equal(c.y, d.y)
    np.testing.assert_allclose(c.y, d.y, rtol=1e-5, atol=1e-7)


def test_logreg_hpo_metrics_include_test_when_given():
    X, y = sparse_classification(2, 200, 6)
    Xv, yv = sparse_classification(3, 100, 6)
    Xt, yt = sparse_classification(4, 100, 6)
    problem = bilevel.LogRegHPO(X, y, Xv, yv, Xt, yt)
    assert "test_accuracy" in problem.metric_names()
    result = bilevel.solve(problem, "aid_cg", max_iters=20)
    assert 0.0 <= result.final_metrics["test_accuracy"] <= 1.0
    frame = result.trace.to_pandas()
    assert list(frame["iter"])[0] == 0 and list(frame["iter"])[-1] == 20


def test_data_cleaning_on_arrays_flags_the_known_corrupted_samples():
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=3.0, size=(3, 5))
    def draw(n):
        labels = rng.integers(0, 3, size=n)
        return centers[labels] + rng.normal(size=(n, 5)), labels.astype(float)
    X, y = draw(150)
    Xv, yv = draw(150)
    corrupted = np.zeros(150, dtype=bool)
    corrupted[:50] = True
    y_noisy = y.copy()
    y_noisy[:50] = (y[:50] + 1) % 3
    problem = bilevel.DataCleaning(X, y_noisy, Xv, yv, corrupted=corrupted, regularization=0.1)
    assert problem.dim_x == 150
    result = bilevel.solve(problem, "aid_cg", max_iters=60, eval_every=20, outer_lr=50.0)
    assert result.status == "done"
    start = result.trace[0]
    # Weights of the corrupted samples fall below 1/2 more often than those of clean ones.
    assert result.final_metrics["flagged_corrupted"] > result.final_metrics["flagged_clean"]
    assert result.final_metrics["value"] < start["value"]


def test_data_cleaning_with_a_network_classifier():
    rng = np.random.default_rng(8)
    centers = rng.normal(scale=3.0, size=(3, 5))
    def draw(n):
        labels = rng.integers(0, 3, size=n)
        return centers[labels] + rng.normal(size=(n, 5)), labels.astype(float)
    X, y = draw(120)
    Xv, yv = draw(90)
    problem = bilevel.DataCleaning(X, y, Xv, yv, corruption=0.3, model="mlp", hidden=[6],
                                   regularization=1e-3)
    # y is the network's parameters: 5*6 + 6 + 6*3 + 3.
    assert (problem.dim_x, problem.dim_y) == (120, 57)
    result = bilevel.solve(problem, "soba", max_iters=200, eval_every=200, batch_size=32,
                           inner_lr=0.2, outer_lr=50.0)
    assert result.status == "done"
    assert result.final_metrics["outer_value"] < result.trace[0]["outer_value"]
    with pytest.raises(ValueError, match="hidden"):
        bilevel.DataCleaning(X, y, Xv, yv, model="mlp", hidden=[0])


def test_the_shipped_ijcnn1_by_name(shared_data):
    if shared_data is None or not (shared_data / "libsvm").exists():
        pytest.skip("../shared/data is not beside this checkout")
    problem = bilevel.builtin("logreg_hpo", dataset={"shared": "ijcnn1"}, max_train=2000,
                              max_validation=2000)
    assert problem.dim_x == 22
    result = bilevel.solve(problem, "soba", max_iters=50, eval_every=50)
    assert result.status == "done"
