//! # MAML's sinusoid regression (a meta-learning problem on a neural network)
//!
//! Finn et al. (2017), §5.1: task j is the function s ↦ A_j sin(s − φ_j) with amplitude A_j
//! uniform in [0.1, 5] and phase φ_j uniform in [0, π]; inputs s are uniform in [−5, 5]. A task
//! shows K support points (its inner loss l_j) and K query points (its outer loss L_j), both ½
//! mean squared error of an MLP 1-40-40-1 with relu units (sizes and activation configurable)
//! on the flat parameters θ. The meta-learner adapts θ to a task by r gradient steps of size α
//! on the support loss (algorithms.md §7.1): g on task j is l_j, f on task j is L_j, and the
//! objectives depend on y = θ only (∇ₓ = 0, as the unrolled contract requires).
//!
//! Every oracle is exact: gradients by backpropagation and Hessian-vector products by the R-op
//! of [`crate::nn::Mlp`] (no finite differences).
//!
//! ## Data (seeded)
//! `tasks` meta-training tasks and `test_tasks` held-out tasks, each with its own support and
//! query points, drawn from `seed`; the start φ₀ is LeCun-normal weights and zero biases.
//!
//! ## Metrics
//! No exact reference (forward-mode M would cost dim × r HVPs per task). The task metrics are
//! - `meta_train_loss`: mean_j L_j(θ_r^j(φ)) over the training tasks, with θ_r^j the problem's
//!   r-step adaptation (the meta-objective M(φ) itself);
//! - `meta_test_mse`: mean over held-out tasks of the query MSE (mean squared error, as MAML
//!   reports it) after `test_steps` adaptation steps of size α on the task's support;
//! - `meta_test_mse_unadapted`: the same before any adaptation.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::network_tasks::{NetworkTasks, TaskData, TaskTargets, adapted_scores};
use crate::core::error::{Error, Result, check_at_least, check_positive};
use crate::core::linalg::rng_from_seed;
use crate::core::{HeadRange, Objective, Problem, TaskMetrics, UnrolledSpec, Vector};
use crate::nn::{Activation, Loss, Mlp, Network};

/// Parameters of the sinusoid problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaSinusoidConfig {
    /// Meta-training tasks.
    pub tasks: usize,
    /// Held-out tasks of the meta-test metrics.
    pub test_tasks: usize,
    /// K: support points per task.
    pub support: usize,
    /// Query points per task.
    pub query: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// r: inner GD steps of the defining loop.
    pub steps: usize,
    /// α: inner step size.
    pub lr: f64,
    /// Adaptation steps of the meta-test metric.
    pub test_steps: usize,
    /// Seed of the tasks and of the start.
    pub seed: u64,
}

impl Default for MetaSinusoidConfig {
    fn default() -> Self {
        Self {
            tasks: 1000,
            test_tasks: 100,
            support: 10,
            query: 10,
            hidden: vec![40, 40],
            activation: Activation::Relu,
            steps: 1,
            lr: 0.01,
            test_steps: 10,
            seed: 0,
        }
    }
}

impl MetaSinusoidConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        check_at_least("tasks", self.tasks, 1)?;
        check_at_least("test_tasks", self.test_tasks, 1)?;
        check_at_least("support", self.support, 1)?;
        check_at_least("query", self.query, 1)?;
        if self.hidden.contains(&0) {
            return Err(Error::InvalidConfig {
                field: "hidden".into(),
                reason: "every hidden width must be >= 1".into(),
            });
        }
        check_positive("lr", self.lr)?;
        Ok(())
    }

    /// The network: 1 input, the hidden widths, 1 output, squared error.
    pub fn network(&self) -> Result<Mlp> {
        let mut sizes = vec![1];
        sizes.extend(&self.hidden);
        sizes.push(1);
        Mlp::new(&sizes, self.activation, Loss::Mse)
    }

    /// Draws the tasks and builds the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let mlp = self.network()?;
        let mut rng = rng_from_seed(self.seed, 0);
        let mut draw = |count: usize| -> (Vec<TaskData>, Vec<TaskData>) {
            let mut support = Vec::with_capacity(count);
            let mut query = Vec::with_capacity(count);
            for _ in 0..count {
                let amplitude = 0.1 + 4.9 * uniform(&mut rng);
                let phase = std::f64::consts::PI * uniform(&mut rng);
                let mut set = |n: usize| {
                    let inputs: Vec<f64> =
                        (0..n).map(|_| -5.0 + 10.0 * uniform(&mut rng)).collect();
                    let targets = inputs
                        .iter()
                        .map(|s| amplitude * (s - phase).sin())
                        .collect();
                    TaskData {
                        inputs: inputs.into(),
                        rows: None,
                        targets: TaskTargets::Regression(targets),
                    }
                };
                support.push(set(self.support));
                query.push(set(self.query));
            }
            (support, query)
        };
        let (support, query) = draw(self.tasks);
        let (test_support, test_query) = draw(self.test_tasks);
        let x0 = Vector::from_fn(mlp.num_params(), {
            let init = mlp.init(&mut rng_from_seed(self.seed, 1));
            move |i| init[i]
        });
        let net = Arc::new(Network::Mlp(mlp.clone()));
        let make = |sets| -> Arc<NetworkTasks> { Arc::new(NetworkTasks::new(net.clone(), sets)) };
        let (f, g) = (make(query), make(support));
        let metrics = SinusoidMetrics {
            f: f.clone(),
            g: g.clone(),
            test_f: make(test_query),
            test_g: make(test_support),
            steps: self.steps,
            test_steps: self.test_steps,
            lr: self.lr,
        };
        // The head: the output layer's weights and bias (the last hidden width + 1).
        let last = *self.hidden.last().unwrap_or(&1);
        let head = HeadRange {
            start: mlp.num_params() - last - 1,
            end: mlp.num_params(),
        };
        let f: Arc<dyn Objective> = f;
        let g: Arc<dyn Objective> = g;
        Problem::from_arcs("meta_sinusoid", f, g)?
            .with_task_metrics(metrics)
            .with_unrolled(UnrolledSpec::new(self.steps, self.lr).with_head(head))
            .with_start(x0.clone(), x0)
            .map_err(|e| Error::config("meta_sinusoid", e.to_string()))
    }
}

fn uniform(rng: &mut crate::core::Rng) -> f64 {
    use rand::RngExt;
    rng.random::<f64>()
}

/// The meta-train loss M(φ) and the meta-test MSE on held-out tasks.
struct SinusoidMetrics {
    f: Arc<NetworkTasks>,
    g: Arc<NetworkTasks>,
    test_f: Arc<NetworkTasks>,
    test_g: Arc<NetworkTasks>,
    steps: usize,
    test_steps: usize,
    lr: f64,
}

impl SinusoidMetrics {
    /// mean_j L_j(θ_r^j(φ)) over the tasks of (support, query), r steps of size α.
    fn adapted_loss(
        support: &NetworkTasks,
        query: &NetworkTasks,
        phi: &Vector,
        steps: usize,
        lr: f64,
    ) -> f64 {
        adapted_scores(support, query, phi, 0..support.tasks(), steps, lr, None).0
    }
}

impl TaskMetrics for SinusoidMetrics {
    fn evaluate(&self, x: &Vector, _y: &Vector) -> Vec<(String, f64)> {
        // ½ MSE → MSE for the test figures (MAML reports the mean squared error).
        vec![
            (
                "meta_train_loss".into(),
                Self::adapted_loss(&self.g, &self.f, x, self.steps, self.lr),
            ),
            (
                "meta_test_mse".into(),
                2.0 * Self::adapted_loss(&self.test_g, &self.test_f, x, self.test_steps, self.lr),
            ),
            (
                "meta_test_mse_unadapted".into(),
                2.0 * Self::adapted_loss(&self.test_g, &self.test_f, x, 0, self.lr),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::normal_vector;
    use crate::core::{Batch, Vector};
    use crate::problems::network_tasks::assert_y_oracles_match_differences;

    fn small() -> MetaSinusoidConfig {
        MetaSinusoidConfig {
            tasks: 6,
            test_tasks: 3,
            support: 5,
            query: 4,
            hidden: vec![8, 8],
            activation: Activation::Tanh,
            ..Default::default()
        }
    }

    #[test]
    fn oracles_match_finite_differences() {
        let problem = small().build().unwrap();
        let (f, g) = problem.uncounted_objectives();
        let (x, y) = problem.start();
        let mut rng = rng_from_seed(3, 0);
        let v = normal_vector(&mut rng, y.nrows());
        for (name, objective) in [("f", &f), ("g", &g)] {
            assert_y_oracles_match_differences(
                objective.as_ref(),
                &x,
                &y,
                &v,
                Batch::Indices(&[1, 4, 1]),
                name,
            );
        }
    }

    #[test]
    fn the_metrics_are_the_adapted_losses() {
        let config = small();
        let problem = config.build().unwrap();
        let (x, y) = problem.start();
        let metrics = problem.metrics(&x, &y, None).unwrap();
        let get = |name: &str| metrics[name];
        // With r = 1 the meta-train loss is the mean query loss after one support step.
        let (f, g) = problem.uncounted_objectives();
        let mut total = 0.0;
        for j in 0..config.tasks {
            let mut grad = Vector::zeros(x.nrows());
            g.grad_y(&x, &x, Batch::Indices(&[j]), &mut grad);
            let theta = &x - &grad * faer::Scale(config.lr);
            total += f.value(&x, &theta, Batch::Indices(&[j]));
        }
        assert!((get("meta_train_loss") - total / config.tasks as f64).abs() < 1e-12);
        assert!(get("meta_test_mse") > 0.0 && get("meta_test_mse_unadapted") > 0.0);
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            MetaSinusoidConfig {
                tasks: 0,
                ..small()
            },
            MetaSinusoidConfig {
                hidden: vec![4, 0],
                ..small()
            },
            MetaSinusoidConfig { lr: 0.0, ..small() },
        ] {
            assert!(bad.build().is_err());
        }
    }
}
