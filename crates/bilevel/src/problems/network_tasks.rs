//! The objective shared by the meta-learning problems on networks ([`super::meta_sinusoid`],
//! [`super::meta_fewshot`]): one level (support or query) of a set of tasks, one sample per task,
//! the value being the mean over the batch's tasks of the network's loss on the task's rows.
//! The objectives depend on y = θ only (∇ₓ = 0 and no cross terms, as the unrolled contract of
//! algorithms.md §7.1 requires); gradients are backpropagation and H·v the R-op of
//! [`crate::nn`].

use std::sync::{Arc, Mutex};

use crate::core::{Batch, Objective, Vector, VectorExt};
use crate::nn::{Network, NetworkWorkspace, Targets, correct_predictions};

/// The targets of one task's rows.
#[derive(Clone, Debug)]
pub(crate) enum TaskTargets {
    /// Regression targets, rows × outputs, indexed like the task's input rows.
    Regression(Vec<f64>),
    /// One class per row of the task, in the task's row order (relabelled 0..N).
    Classes(Vec<usize>),
}

/// One task at one level: rows of an input array (its own or a shared pool) and their targets.
#[derive(Clone, Debug)]
pub(crate) struct TaskData {
    /// Input rows (row-major, the network's input width per row).
    pub inputs: Arc<[f64]>,
    /// The task's rows of `inputs`; `None`: every row.
    pub rows: Option<Vec<usize>>,
    pub targets: TaskTargets,
}

impl TaskData {
    fn targets(&self) -> Targets<'_> {
        match &self.targets {
            TaskTargets::Regression(t) => Targets::Regression(t),
            TaskTargets::Classes(c) => Targets::ClassesOfBatch(c),
        }
    }
}

/// Buffers of one objective: the network's workspace and one task's gradient or product.
struct Scratch {
    ws: NetworkWorkspace,
    task: Vec<f64>,
}

/// One level of all tasks (see the module docs).
pub struct NetworkTasks {
    net: Arc<Network>,
    sets: Vec<TaskData>,
    scratch: Mutex<Scratch>,
}

impl NetworkTasks {
    pub(crate) fn new(net: Arc<Network>, sets: Vec<TaskData>) -> Self {
        let task = vec![0.0; net.num_params()];
        Self {
            net,
            sets,
            scratch: Mutex::new(Scratch {
                ws: NetworkWorkspace::new(),
                task,
            }),
        }
    }

    /// The number of tasks.
    pub fn tasks(&self) -> usize {
        self.sets.len()
    }

    /// Calls `visit` on each task of `batch` (once per occurrence); returns their number.
    fn for_each_task(&self, batch: Batch<'_>, mut visit: impl FnMut(&TaskData)) -> usize {
        match batch {
            Batch::Full => {
                self.sets.iter().for_each(&mut visit);
                self.sets.len()
            }
            Batch::Indices(idx) => {
                assert!(!idx.is_empty(), "network tasks: empty batch");
                for &j in idx {
                    assert!(j < self.sets.len(), "network tasks: task {j} out of range");
                    visit(&self.sets[j]);
                }
                idx.len()
            }
        }
    }

    fn scratch(&self) -> std::sync::MutexGuard<'_, Scratch> {
        self.scratch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fraction of task `j`'s rows whose largest output is the row's class (0 for a
    /// regression task).
    pub(crate) fn accuracy(&self, theta: &Vector, j: usize) -> f64 {
        let set = &self.sets[j];
        let TaskTargets::Classes(classes) = &set.targets else {
            return 0.0;
        };
        let mut scratch = self.scratch();
        let scores = self.net.outputs_of(
            theta.as_slice(),
            &set.inputs,
            set.rows.as_deref(),
            &mut scratch.ws,
        );
        let correct = correct_predictions(scores, self.net.outputs(), classes);
        correct as f64 / classes.len() as f64
    }
}

/// The mean over `tasks` of a task's query loss and accuracy after `steps` gradient steps of
/// size `lr` on its support, from `phi`: the meta-objective and the meta-test figures. With
/// `proximal = Some(λ)` the steps descend l_j(θ) + (λ/2)‖θ − φ‖² instead (iMAML's adaptation).
pub(crate) fn adapted_scores(
    support: &NetworkTasks,
    query: &NetworkTasks,
    phi: &Vector,
    tasks: std::ops::Range<usize>,
    steps: usize,
    lr: f64,
    proximal: Option<f64>,
) -> (f64, f64) {
    let mut theta = phi.clone();
    let mut grad = Vector::zeros(phi.nrows());
    let (mut loss, mut accuracy) = (0.0, 0.0);
    let count = tasks.len().max(1) as f64;
    for j in tasks {
        theta.assign(phi);
        let task = [j];
        for _ in 0..steps {
            support.grad_y(phi, &theta, Batch::Indices(&task), &mut grad);
            if let Some(lambda) = proximal {
                grad.axpy(lambda, &theta);
                grad.axpy(-lambda, phi);
            }
            theta.axpy(-lr, &grad);
        }
        loss += query.value(phi, &theta, Batch::Indices(&task));
        accuracy += query.accuracy(&theta, j);
    }
    (loss / count, accuracy / count)
}

impl Objective for NetworkTasks {
    fn dims(&self) -> (usize, usize) {
        let n = self.net.num_params();
        (n, n)
    }
    fn n_samples(&self) -> usize {
        self.sets.len()
    }
    fn value(&self, _x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        let mut scratch = self.scratch();
        let mut total = 0.0;
        let tasks = self.for_each_task(batch, |set| {
            total += self.net.loss_grad(
                y.as_slice(),
                &set.inputs,
                set.targets(),
                set.rows.as_deref(),
                None,
                &mut scratch.ws,
            );
        });
        total / tasks as f64
    }
    fn grad_x(&self, _x: &Vector, _y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
    fn grad_y(&self, _x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut scratch = self.scratch();
        let Scratch { ws, task } = &mut *scratch;
        let o = out.as_mut_slice();
        o.fill(0.0);
        let tasks = self.for_each_task(batch, |set| {
            self.net.loss_grad(
                y.as_slice(),
                &set.inputs,
                set.targets(),
                set.rows.as_deref(),
                Some(task),
                ws,
            );
            o.iter_mut().zip(task.iter()).for_each(|(a, b)| *a += b);
        });
        let inv = 1.0 / tasks as f64;
        o.iter_mut().for_each(|a| *a *= inv);
    }
    fn hvp_yy(&self, _x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut scratch = self.scratch();
        let Scratch { ws, task } = &mut *scratch;
        let o = out.as_mut_slice();
        o.fill(0.0);
        let tasks = self.for_each_task(batch, |set| {
            self.net.hvp(
                y.as_slice(),
                v.as_slice(),
                &set.inputs,
                set.targets(),
                set.rows.as_deref(),
                None,
                task,
                ws,
            );
            o.iter_mut().zip(task.iter()).for_each(|(a, b)| *a += b);
        });
        let inv = 1.0 / tasks as f64;
        o.iter_mut().for_each(|a| *a *= inv);
    }
    fn cross_xy(&self, _x: &Vector, _y: &Vector, _v: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
    fn cross_yx(&self, _x: &Vector, _y: &Vector, _u: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
}

/// Test helper: ∇ᵧ and ∇²ᵧᵧ·v of `objective` at (x, y) against central differences along v.
#[cfg(test)]
pub(crate) fn assert_y_oracles_match_differences(
    objective: &dyn Objective,
    x: &Vector,
    y: &Vector,
    v: &Vector,
    batch: Batch<'_>,
    what: &str,
) {
    use crate::core::VectorExt;
    let h = 1e-5;
    let shifted = |s: f64| y + v * faer::Scale(s);
    let mut grad = Vector::zeros(y.nrows());
    objective.grad_y(x, y, batch, &mut grad);
    let fd = (objective.value(x, &shifted(h), batch) - objective.value(x, &shifted(-h), batch))
        / (2.0 * h);
    let directional = grad.dot(v);
    // Central differences: O(h²) truncation plus 1e-16/h rounding; 1e-6 relative is ample and
    // any wrong term is O(1).
    assert!(
        (fd - directional).abs() < 1e-6 * directional.abs().max(1.0),
        "{what}: {fd} vs {directional}"
    );
    let mut hv = Vector::zeros(y.nrows());
    objective.hvp_yy(x, y, v, batch, &mut hv);
    let (mut gp, mut gm) = (Vector::zeros(y.nrows()), Vector::zeros(y.nrows()));
    objective.grad_y(x, &shifted(h), batch, &mut gp);
    objective.grad_y(x, &shifted(-h), batch, &mut gm);
    let fd_hv = (&gp - &gm) * faer::Scale(1.0 / (2.0 * h));
    let err = (&hv - &fd_hv).norm() / fd_hv.norm();
    assert!(err < 1e-6, "{what}: {err:e}");
}
