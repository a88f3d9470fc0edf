"""Per-feature L2 penalties of logistic regression on the real ijcnn1 (shipped), tuned by two
hypergradient solvers; validation and test accuracy before and after.

    pip install ./crates/bilevel-py
    python examples/python/tune_logreg.py

ijcnn1's training file is split 80/20 into training and validation rows; its test file
(91,701 rows) is the test set.
"""

import numpy as np

import bilevel

problem = bilevel.builtin(
    "logreg_hpo",
    dataset={"shared": "ijcnn1"},
    validation_fraction=0.2,
    penalty="per_feature",
)
print(problem)
x0, y0 = problem.start()
before = problem.metrics(x0, y0)
print(f"start: validation accuracy {before['validation_accuracy']:.4f}, "
      f"test accuracy {before['test_accuracy']:.4f}, F(x) = {before['value']:.5f}")

runs = {
    "soba": dict(batch_size=64, outer_lr=0.5, inner_lr=0.5),
    "aid_cg": dict(inner_steps=10, outer_lr=1.0),
}
for solver, params in runs.items():
    result = bilevel.solve(problem, solver, max_seconds=5.0, eval_every=200, seed=0, **params)
    m = result.final_metrics
    print(f"{solver:>7}: {result.status} after {result.iters} iterations "
          f"({result.solver_time_s:.2f} s): validation accuracy {m['validation_accuracy']:.4f}, "
          f"test accuracy {m['test_accuracy']:.4f}, F(x) = {m['value']:.5f}, "
          f"penalties exp(x) in [{np.exp(result.x).min():.2e}, {np.exp(result.x).max():.2e}]")
