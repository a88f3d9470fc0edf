//! # N-way K-shot classification (few-shot meta-learning on a network)
//!
//! Vinyals et al. (2016), as MAML (Finn et al. 2017, §5.2) and UFO-BLO use it: a task draws N
//! classes, relabels them 0..N−1 in random order, and shows K images per class (the support,
//! its inner loss l_j) and Q more per class (the query, its outer loss L_j); both are the mean
//! softmax cross-entropy of a network with N outputs on the flat parameters θ. The meta-learner
//! adapts θ to a task by r gradient steps of size α on the support loss (algorithms.md §7.1),
//! exactly as in [`super::meta_sinusoid`]: g on task j is l_j, f on task j is L_j.
//!
//! The classes are split by `seed` into disjoint meta-train and meta-test classes: the tasks
//! the solvers see draw only meta-train classes, the held-out tasks of the metrics only
//! meta-test classes.
//!
//! ## Data
//! - `dataset = { shared = "mnist_test" }` (the default), `{ shared = "digits" }`, or any
//!   labelled file by path: Fashion-MNIST's IDX files, for instance (`format = "idx"`,
//!   `labels_path = …`). Pixels are scaled so that the largest is 1; an image is square grey
//!   unless `image = [height, width, channels]` says otherwise (channels-last rows).
//! - `omniglot = "…/images_background"` (or a list of roots, pooled): Omniglot's PNG tree
//!   ([`crate::data::omniglot`]), shrunk to `image_size` a side. Without Omniglot at hand, the
//!   loader's test builds a small tree of generated PNGs.
//! - In experiment files a list is a grid axis, so list values take double brackets:
//!   `hidden = [[128, 64]]`, `image = [[32, 32, 3]]`, `omniglot = [["bg", "eval"]]`.
//! - At most `max_per_class` images per class are kept (a seeded choice).
//!
//! ## Models
//! - `model = "conv4"`: `blocks` (4) blocks of `filters` 3×3 filters, activation and 2×2
//!   max-pool, then a dense softmax head ([`crate::nn::ConvNet`], no batch norm);
//! - `model = "mlp"`: hidden widths `hidden`, then the softmax head ([`crate::nn::Mlp`]).
//!
//! Every oracle is exact: gradients by backpropagation, Hessian-vector products by the R-op.
//!
//! ## Metrics
//! - `meta_train_loss`, `meta_train_accuracy`: the query loss and accuracy after the problem's
//!   r steps, over the first `test_tasks` training tasks (M(φ) on them);
//! - `meta_test_loss`, `meta_test_accuracy`: the same on the held-out tasks after `test_steps`
//!   steps, as the papers report;
//! - with `test_proximal = λ`, also `meta_test_proximal_loss`, `meta_test_proximal_accuracy`:
//!   the held-out figures after `test_steps` steps on l_j(θ) + (λ/2)‖θ − φ‖² (iMAML's
//!   adaptation).
//!
//! The full-batch `outer_value` and `inner_grad_norm` are left out: they would sweep every
//! training task's images at each evaluation.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::network_tasks::{NetworkTasks, TaskData, TaskTargets, adapted_scores};
use crate::core::error::{Error, Result, check_at_least, check_positive};
use crate::core::linalg::{rng_from_seed, shuffle, uniform_below};
use crate::core::{HeadRange, Objective, Problem, TaskMetrics, UnrolledSpec, Vector};
use crate::data::{DatasetSpec, omniglot};
use crate::nn::{Activation, ConvBlock, ConvNet, ImageShape, Loss, Mlp, Network};

/// The network of a few-shot problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FewshotModel {
    /// Convolution blocks (conv-4 by default) and a softmax head.
    Conv4,
    /// A multilayer perceptron with a softmax head.
    Mlp,
}

/// Parameters of the few-shot problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaFewshotConfig {
    /// Labelled images (ignored when `omniglot` is given).
    pub dataset: DatasetSpec,
    /// Omniglot roots (`ROOT/<alphabet>/<character>/<image>.png`): one path, or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub omniglot: Vec<PathBuf>,
    /// Side of the Omniglot images after shrinking.
    pub image_size: usize,
    /// [height, width, channels] of one `dataset` row; default: square, one channel.
    pub image: Option<[usize; 3]>,
    /// N: classes per task.
    pub ways: usize,
    /// K: support images per class.
    pub shots: usize,
    /// Query images per class.
    pub queries: usize,
    /// Meta-training tasks (drawn once from `seed`).
    pub tasks: usize,
    /// Held-out tasks of the meta-test metrics.
    pub test_tasks: usize,
    /// Classes held out for meta-testing; default: half of them.
    pub test_classes: Option<usize>,
    /// Images kept per class.
    pub max_per_class: usize,
    /// Each class also at 90°, 180° and 270° as three new classes (square images), as MAML
    /// does on Omniglot: four times the classes, on each side of the split.
    pub rotations: bool,
    /// The network.
    pub model: FewshotModel,
    /// Filters per convolution block (`conv4`).
    pub filters: usize,
    /// Convolution blocks (`conv4`).
    pub blocks: usize,
    /// Hidden widths (`mlp`).
    pub hidden: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// r: inner GD steps of the defining loop.
    pub steps: usize,
    /// α: inner step size.
    pub lr: f64,
    /// Adaptation steps of the meta-test metrics.
    pub test_steps: usize,
    /// λ of a proximal term (λ/2)‖θ − φ‖²: adds `meta_test_proximal_loss` and
    /// `meta_test_proximal_accuracy`, the meta-test figures after `test_steps` steps on the
    /// proximal support loss (iMAML's adaptation, the one an iMAML run trains for).
    pub test_proximal: Option<f64>,
    /// Seed of the class split, the tasks and the start.
    pub seed: u64,
}

impl Default for MetaFewshotConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetSpec::shared("mnist_test"),
            omniglot: Vec::new(),
            image_size: 28,
            image: None,
            ways: 5,
            shots: 1,
            queries: 15,
            tasks: 1000,
            test_tasks: 100,
            test_classes: None,
            max_per_class: 200,
            rotations: false,
            model: FewshotModel::Conv4,
            filters: 32,
            blocks: 4,
            hidden: vec![64],
            activation: Activation::Relu,
            steps: 1,
            lr: 0.4,
            test_steps: 3,
            test_proximal: None,
            seed: 0,
        }
    }
}

/// A square channels-last image turned by `quarter_turns` × 90° counter-clockwise.
fn rotate(image: &[f64], shape: ImageShape, quarter_turns: usize) -> Vec<f64> {
    let (n, c) = (shape.height, shape.channels);
    let mut out = vec![0.0; image.len()];
    for y in 0..n {
        for x in 0..n {
            // Counter-clockwise by 90°: the pixel at (y, x) moves to (n − 1 − x, y).
            let (ty, tx) = match quarter_turns % 4 {
                0 => (y, x),
                1 => (n - 1 - x, y),
                2 => (n - 1 - y, n - 1 - x),
                _ => (x, n - 1 - y),
            };
            out[(ty * n + tx) * c..(ty * n + tx + 1) * c]
                .copy_from_slice(&image[(y * n + x) * c..(y * n + x + 1) * c]);
        }
    }
    out
}

/// Moves `k` uniformly drawn distinct items, in random order, to the front of `items` (the
/// first k steps of a Fisher–Yates shuffle).
fn draw_first(rng: &mut crate::core::Rng, items: &mut [usize], k: usize) {
    for i in 0..k {
        let j = i + uniform_below(rng, items.len() - i);
        items.swap(i, j);
    }
}

/// A path or a list of paths.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(path) => vec![path],
        OneOrMany::Many(paths) => paths,
    })
}

/// Images of the kept rows, contiguous, with the pool rows of each class.
struct ImagePool {
    pixels: Arc<[f64]>,
    shape: ImageShape,
    by_class: Vec<Vec<usize>>,
}

impl MetaFewshotConfig {
    /// Checks the parameters (the data is checked when loaded).
    pub fn validate(&self) -> Result<()> {
        check_at_least("ways", self.ways, 2)?;
        check_at_least("shots", self.shots, 1)?;
        check_at_least("queries", self.queries, 1)?;
        check_at_least("tasks", self.tasks, 1)?;
        check_at_least("test_tasks", self.test_tasks, 1)?;
        check_at_least("image_size", self.image_size, 1)?;
        check_at_least(
            "max_per_class",
            self.max_per_class,
            self.shots + self.queries,
        )?;
        check_positive("lr", self.lr)?;
        if let Some(lambda) = self.test_proximal {
            check_positive("test_proximal", lambda)?;
        }
        if self.omniglot.is_empty() {
            self.dataset.validate("dataset")?;
        }
        match self.model {
            FewshotModel::Conv4 => {
                check_at_least("filters", self.filters, 1)?;
            }
            FewshotModel::Mlp => {
                if self.hidden.contains(&0) {
                    return Err(Error::config("hidden", "every hidden width must be >= 1"));
                }
            }
        }
        Ok(())
    }

    /// The network on images of `shape`.
    pub fn network(&self, shape: ImageShape) -> Result<Network> {
        Ok(match self.model {
            FewshotModel::Conv4 => Network::Conv(ConvNet::new(
                shape,
                &vec![ConvBlock::conv4(self.filters); self.blocks],
                self.activation,
                self.ways,
            )?),
            FewshotModel::Mlp => {
                let mut sizes = vec![shape.len()];
                sizes.extend(&self.hidden);
                sizes.push(self.ways);
                Network::Mlp(Mlp::new(
                    &sizes,
                    self.activation,
                    Loss::SoftmaxCrossEntropy,
                )?)
            }
        })
    }

    /// Loads the images, keeps at most `max_per_class` per class.
    fn pool(&self) -> Result<ImagePool> {
        let (dataset, source) = if self.omniglot.is_empty() {
            let loaded = self.dataset.load(self.seed)?;
            (loaded.train, self.dataset.source())
        } else {
            let loaded = omniglot::load(&self.omniglot, self.image_size)?;
            (loaded.dataset, "omniglot".to_owned())
        };
        let features = dataset.n_features();
        let shape = ImageShape::of_rows(self.image, features, &source)?;
        let labels = dataset.class_labels()?;
        let mut by_row_class: Vec<Vec<usize>> = vec![Vec::new(); labels.classes.len()];
        for (row, &class) in labels.class.iter().enumerate() {
            by_row_class[class as usize].push(row);
        }
        let mut rng = rng_from_seed(self.seed, 20);
        let needed = self.shots + self.queries;
        let mut pixels = Vec::new();
        let mut by_class = Vec::new();
        let scale = dataset.design.max_abs();
        let scale = if scale > 0.0 { 1.0 / scale } else { 1.0 };
        for (class, rows) in by_row_class.iter_mut().enumerate() {
            if rows.len() < needed {
                return Err(Error::config(
                    "queries",
                    format!(
                        "class {} of {source} has {} images; a task needs shots + queries = \
                         {needed} of each class",
                        labels.classes[class],
                        rows.len()
                    ),
                ));
            }
            shuffle(&mut rng, rows);
            rows.truncate(self.max_per_class);
            let mut pool_rows = Vec::with_capacity(rows.len());
            for &row in rows.iter() {
                pool_rows.push(pixels.len() / features);
                pixels.extend(dataset.design.dense_row(row).iter().map(|v| v * scale));
            }
            by_class.push(pool_rows);
        }
        if self.rotations {
            if shape.height != shape.width {
                return Err(Error::config(
                    "rotations",
                    format!(
                        "rotating by 90° needs square images, not {}×{}",
                        shape.height, shape.width
                    ),
                ));
            }
            let originals = by_class.len();
            for quarter_turns in 1..4 {
                for class in 0..originals {
                    let mut rotated = Vec::with_capacity(by_class[class].len());
                    for &row in &by_class[class] {
                        let image = pixels[row * features..(row + 1) * features].to_vec();
                        rotated.push(pixels.len() / features);
                        pixels.extend(rotate(&image, shape, quarter_turns));
                    }
                    by_class.push(rotated);
                }
            }
        }
        Ok(ImagePool {
            pixels: pixels.into(),
            shape,
            by_class,
        })
    }

    /// Loads the data, splits the classes, draws the tasks and builds the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let pool = self.pool()?;
        let classes = pool.by_class.len();
        let test_classes = self.test_classes.unwrap_or(classes / 2);
        let train_classes = classes.saturating_sub(test_classes);
        if test_classes < self.ways || train_classes < self.ways {
            return Err(Error::config(
                "test_classes",
                format!(
                    "{classes} classes split into {train_classes} for meta-training and \
                     {test_classes} for meta-testing; each side needs ways = {}",
                    self.ways
                ),
            ));
        }
        let mut order: Vec<usize> = (0..classes).collect();
        let mut rng = rng_from_seed(self.seed, 21);
        shuffle(&mut rng, &mut order);
        let (test_split, train_split) = order.split_at(test_classes);
        let net = Arc::new(self.network(pool.shape)?);
        let (support, query) = self.draw(&pool, train_split, self.tasks, &mut rng);
        let (test_support, test_query) = self.draw(&pool, test_split, self.test_tasks, &mut rng);
        let make = |sets| -> Arc<NetworkTasks> { Arc::new(NetworkTasks::new(net.clone(), sets)) };
        let (f, g) = (make(query), make(support));
        let metrics = FewshotMetrics {
            f: f.clone(),
            g: g.clone(),
            test_f: make(test_query),
            test_g: make(test_support),
            train_eval: self.tasks.min(self.test_tasks),
            steps: self.steps,
            test_steps: self.test_steps,
            lr: self.lr,
            test_proximal: self.test_proximal,
        };
        let params = net.num_params();
        let x0 = Vector::from_fn(params, {
            let init = net.init(&mut rng_from_seed(self.seed, 1));
            move |i| init[i]
        });
        let head = HeadRange {
            start: params - net.head_params(),
            end: params,
        };
        let f: Arc<dyn Objective> = f;
        let g: Arc<dyn Objective> = g;
        Problem::from_arcs("meta_fewshot", f, g)?
            .with_task_metrics(metrics)
            .without_full_batch_metrics()
            .with_unrolled(UnrolledSpec::new(self.steps, self.lr).with_head(head))
            .with_start(x0.clone(), x0)
            .map_err(|e| Error::config("meta_fewshot", e.to_string()))
    }

    /// `count` tasks over the classes of `split`: support and query sets.
    fn draw(
        &self,
        pool: &ImagePool,
        split: &[usize],
        count: usize,
        rng: &mut crate::core::Rng,
    ) -> (Vec<TaskData>, Vec<TaskData>) {
        let mut supports = Vec::with_capacity(count);
        let mut queries = Vec::with_capacity(count);
        let mut classes = split.to_vec();
        for _ in 0..count {
            // The first `ways` of a partial shuffle: N distinct classes in random order, so
            // label l of the task is the l-th drawn class.
            draw_first(rng, &mut classes, self.ways);
            let mut support = (Vec::new(), Vec::new());
            let mut query = (Vec::new(), Vec::new());
            for (label, &class) in classes[..self.ways].iter().enumerate() {
                let mut rows = pool.by_class[class].clone();
                draw_first(rng, &mut rows, self.shots + self.queries);
                support.0.extend(&rows[..self.shots]);
                support.1.extend(std::iter::repeat_n(label, self.shots));
                query.0.extend(&rows[self.shots..self.shots + self.queries]);
                query.1.extend(std::iter::repeat_n(label, self.queries));
            }
            let set = |(rows, labels): (Vec<usize>, Vec<usize>)| TaskData {
                inputs: pool.pixels.clone(),
                rows: Some(rows),
                targets: TaskTargets::Classes(labels),
            };
            supports.push(set(support));
            queries.push(set(query));
        }
        (supports, queries)
    }
}

/// Query loss and accuracy after adaptation, on training and held-out tasks.
struct FewshotMetrics {
    f: Arc<NetworkTasks>,
    g: Arc<NetworkTasks>,
    test_f: Arc<NetworkTasks>,
    test_g: Arc<NetworkTasks>,
    train_eval: usize,
    steps: usize,
    test_steps: usize,
    lr: f64,
    test_proximal: Option<f64>,
}

impl TaskMetrics for FewshotMetrics {
    fn evaluate(&self, x: &Vector, _y: &Vector) -> Vec<(String, f64)> {
        let (train_loss, train_accuracy) = adapted_scores(
            &self.g,
            &self.f,
            x,
            0..self.train_eval,
            self.steps,
            self.lr,
            None,
        );
        let test = |proximal| {
            adapted_scores(
                &self.test_g,
                &self.test_f,
                x,
                0..self.test_g.tasks(),
                self.test_steps,
                self.lr,
                proximal,
            )
        };
        let (test_loss, test_accuracy) = test(None);
        let mut metrics = vec![
            ("meta_train_loss".into(), train_loss),
            ("meta_train_accuracy".into(), train_accuracy),
            ("meta_test_loss".into(), test_loss),
            ("meta_test_accuracy".into(), test_accuracy),
        ];
        if let Some(lambda) = self.test_proximal {
            let (loss, accuracy) = test(Some(lambda));
            metrics.push(("meta_test_proximal_loss".into(), loss));
            metrics.push(("meta_test_proximal_accuracy".into(), accuracy));
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Batch;
    use crate::core::linalg::normal_vector;
    use crate::problems::network_tasks::assert_y_oracles_match_differences;

    /// digits (8×8, shipped): two conv blocks or an MLP, a handful of tasks.
    fn small(model: FewshotModel) -> MetaFewshotConfig {
        MetaFewshotConfig {
            dataset: DatasetSpec::shared("digits"),
            tasks: 6,
            test_tasks: 4,
            queries: 3,
            shots: 2,
            ways: 3,
            max_per_class: 20,
            model,
            filters: 3,
            blocks: 2,
            hidden: vec![8],
            activation: Activation::Tanh,
            ..Default::default()
        }
    }

    #[test]
    fn oracles_match_finite_differences() {
        for model in [FewshotModel::Conv4, FewshotModel::Mlp] {
            let problem = small(model).build().unwrap();
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
                    &format!("{model:?} {name}"),
                );
            }
        }
    }

    #[test]
    fn tasks_draw_disjoint_classes_with_relabelled_targets() {
        let config = small(FewshotModel::Mlp);
        let pool = config.pool().unwrap();
        assert_eq!(pool.by_class.len(), 10);
        assert!(pool.by_class.iter().all(|rows| rows.len() == 20));
        assert!(pool.pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let mut rng = rng_from_seed(0, 0);
        let split = [7, 2, 5, 9];
        let (support, query) = config.draw(&pool, &split, 50, &mut rng);
        let class_of = |row: usize| pool.by_class.iter().position(|r| r.contains(&row)).unwrap();
        for (s, q) in support.iter().zip(&query) {
            let (TaskTargets::Classes(sl), TaskTargets::Classes(ql)) = (&s.targets, &q.targets)
            else {
                panic!("classification targets expected");
            };
            let (srows, qrows) = (s.rows.as_ref().unwrap(), q.rows.as_ref().unwrap());
            assert_eq!(srows.len(), config.ways * config.shots);
            assert_eq!(qrows.len(), config.ways * config.queries);
            // No image in both the support and the query.
            assert!(srows.iter().all(|r| !qrows.contains(r)));
            // Each label is one class of the split, the same in support and query, and the
            // N labels name N distinct classes.
            let mut seen = vec![None; config.ways];
            for (&row, &label) in srows.iter().chain(qrows).zip(sl.iter().chain(ql)) {
                let class = class_of(row);
                assert!(split.contains(&class));
                assert_eq!(*seen[label].get_or_insert(class), class);
            }
            let mut distinct: Vec<_> = seen.iter().flatten().collect();
            distinct.dedup();
            assert_eq!(distinct.len(), config.ways);
        }
    }

    #[test]
    fn rotations_add_three_turned_copies_of_each_class() {
        let plain = small(FewshotModel::Mlp).pool().unwrap();
        let turned = MetaFewshotConfig {
            rotations: true,
            ..small(FewshotModel::Mlp)
        }
        .pool()
        .unwrap();
        assert_eq!(turned.by_class.len(), 40);
        let image = |pool: &ImagePool, row: usize| pool.pixels[row * 64..(row + 1) * 64].to_vec();
        // Class 10 + c is class c turned once: pixel (y, x) of the original is at (7 − x, y).
        let (original, once) = (
            image(&plain, plain.by_class[3][0]),
            image(&turned, turned.by_class[13][0]),
        );
        for y in 0..8 {
            for x in 0..8 {
                assert_eq!(once[(7 - x) * 8 + y], original[y * 8 + x]);
            }
        }
        // Four turns are the identity; two are the 180° turn.
        let shape = turned.shape;
        assert_eq!(rotate(&original, shape, 4), original);
        assert_eq!(
            rotate(&rotate(&original, shape, 1), shape, 1),
            image(&turned, turned.by_class[23][0])
        );
        let wide = MetaFewshotConfig {
            image: Some([4, 16, 1]),
            rotations: true,
            ..small(FewshotModel::Mlp)
        };
        assert!(wide.build().unwrap_err().to_string().contains("square"));
    }

    #[test]
    fn the_metrics_are_the_adapted_scores() {
        let config = small(FewshotModel::Mlp);
        let problem = config.build().unwrap();
        let (x, y) = problem.start();
        let metrics = problem.metrics(&x, &y, None).unwrap();
        let (f, g) = problem.uncounted_objectives();
        // r = 1: the meta-train loss is the mean query loss after one support step.
        let mut total = 0.0;
        for j in 0..config.test_tasks {
            let mut grad = Vector::zeros(x.nrows());
            g.grad_y(&x, &x, Batch::Indices(&[j]), &mut grad);
            let theta = &x - &grad * faer::Scale(config.lr);
            total += f.value(&x, &theta, Batch::Indices(&[j]));
        }
        let expected = total / config.test_tasks as f64;
        assert!((metrics["meta_train_loss"] - expected).abs() < 1e-12);
        for name in ["meta_train_accuracy", "meta_test_accuracy"] {
            assert!((0.0..=1.0).contains(&metrics[name]), "{name}");
        }
        assert!(metrics["meta_test_loss"] > 0.0);
    }

    #[test]
    fn the_proximal_metrics_adapt_with_the_proximal_term() {
        let with = |lambda: f64| {
            let problem = MetaFewshotConfig {
                test_proximal: Some(lambda),
                ..small(FewshotModel::Mlp)
            }
            .build()
            .unwrap();
            let (x, y) = problem.start();
            problem.metrics(&x, &y, None).unwrap()
        };
        // A vanishing λ is plain SGD to rounding (the term is λ(θ − φ) ≈ 1e-12 · O(1)).
        let faint = with(1e-12);
        for (proximal, plain) in [
            ("meta_test_proximal_loss", "meta_test_loss"),
            ("meta_test_proximal_accuracy", "meta_test_accuracy"),
        ] {
            assert!((faint[proximal] - faint[plain]).abs() < 1e-9, "{proximal}");
        }
        // A real λ pulls the adapted parameters back towards φ: another loss.
        let pulled = with(1.0);
        assert!((pulled["meta_test_proximal_loss"] - pulled["meta_test_loss"]).abs() > 1e-6);
        assert_eq!(pulled["meta_test_loss"], faint["meta_test_loss"]);
        let err = MetaFewshotConfig {
            test_proximal: Some(0.0),
            ..small(FewshotModel::Mlp)
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(err.contains("test_proximal"), "{err}");
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let too_many_ways = MetaFewshotConfig {
            ways: 6,
            ..small(FewshotModel::Mlp)
        };
        let err = too_many_ways.build().unwrap_err().to_string();
        assert!(err.contains("each side needs ways = 6"), "{err}");
        let wrong_shape = MetaFewshotConfig {
            image: Some([4, 4, 1]),
            ..small(FewshotModel::Mlp)
        };
        let err = wrong_shape.build().unwrap_err().to_string();
        assert!(err.contains("64 numbers per row"), "{err}");
        let deep = MetaFewshotConfig {
            blocks: 4,
            ..small(FewshotModel::Conv4)
        };
        let err = deep.build().unwrap_err().to_string();
        assert!(err.contains("pool does not fit"), "{err}");
        for bad in [
            MetaFewshotConfig {
                ways: 1,
                ..small(FewshotModel::Mlp)
            },
            MetaFewshotConfig {
                max_per_class: 3,
                ..small(FewshotModel::Mlp)
            },
            MetaFewshotConfig {
                lr: 0.0,
                ..small(FewshotModel::Mlp)
            },
        ] {
            assert!(bad.build().is_err());
        }
    }
}
