//! [`MinibatchSampler`]: seeded, serializable minibatch index streams.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::linalg::{Rng, rng_from_seed, shuffle, uniform_below};

/// How a sampler draws its minibatches. In experiment files a plain name (`"contiguous"`), or
/// a table that also sets the first epoch:
/// `{ mode = "contiguous", first_epoch = "ordered" }` visits the first epoch in file order
/// (the reference benchmark's sampler, to replay its runs exactly); later epochs are shuffled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SamplingMode {
    /// Without replacement: shuffle the samples each epoch and walk the permutation (a batch that
    /// crosses an epoch boundary is completed from the next epoch's permutation).
    #[default]
    Shuffled,
    /// With replacement: every index uniform, independently.
    WithReplacement,
    /// The reference benchmark's mode: contiguous blocks of `batch_size` samples
    /// (wrapping around at n), the block order permuted each epoch.
    Contiguous,
    /// `Shuffled`, with the first epoch in file order.
    ShuffledOrderedFirst,
    /// `Contiguous`, with the first epoch's blocks in file order (the reference benchmark's
    /// sampler).
    ContiguousOrderedFirst,
}

impl SamplingMode {
    /// The order within an epoch (`Shuffled`, `WithReplacement` or `Contiguous`), without the
    /// first-epoch rule.
    pub fn order(self) -> SamplingMode {
        match self {
            SamplingMode::ShuffledOrderedFirst => SamplingMode::Shuffled,
            SamplingMode::ContiguousOrderedFirst => SamplingMode::Contiguous,
            other => other,
        }
    }

    /// Whether the first epoch is visited in file order.
    pub fn first_epoch_ordered(self) -> bool {
        matches!(
            self,
            SamplingMode::ShuffledOrderedFirst | SamplingMode::ContiguousOrderedFirst
        )
    }

    fn name(self) -> &'static str {
        match self.order() {
            SamplingMode::WithReplacement => "with_replacement",
            SamplingMode::Contiguous => "contiguous",
            _ => "shuffled",
        }
    }
}

impl Serialize for SamplingMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.first_epoch_ordered() {
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry("mode", self.name())?;
            map.serialize_entry("first_epoch", "ordered")?;
            map.end()
        } else {
            s.serialize_str(self.name())
        }
    }
}

impl<'de> Deserialize<'de> for SamplingMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Order {
            Shuffled,
            WithReplacement,
            Contiguous,
        }
        #[derive(Deserialize, Default, PartialEq)]
        #[serde(rename_all = "snake_case")]
        enum FirstEpoch {
            #[default]
            Shuffled,
            Ordered,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            mode: Order,
            #[serde(default)]
            first_epoch: FirstEpoch,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Name(Order),
            Table(Table),
        }
        let (order, first) = match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected \"shuffled\", \"with_replacement\", \"contiguous\" or a table \
                 { mode = …, first_epoch = \"shuffled\" | \"ordered\" }",
            )
        })? {
            Either::Name(order) => (order, FirstEpoch::Shuffled),
            Either::Table(t) => (t.mode, t.first_epoch),
        };
        Ok(match (order, first) {
            (Order::Shuffled, FirstEpoch::Shuffled) => SamplingMode::Shuffled,
            (Order::Shuffled, FirstEpoch::Ordered) => SamplingMode::ShuffledOrderedFirst,
            (Order::Contiguous, FirstEpoch::Shuffled) => SamplingMode::Contiguous,
            (Order::Contiguous, FirstEpoch::Ordered) => SamplingMode::ContiguousOrderedFirst,
            (Order::WithReplacement, FirstEpoch::Shuffled) => SamplingMode::WithReplacement,
            (Order::WithReplacement, FirstEpoch::Ordered) => {
                return Err(serde::de::Error::custom(
                    "first_epoch = \"ordered\" needs mode \"shuffled\" or \"contiguous\" (with \
                     replacement has no epochs)",
                ));
            }
        })
    }
}

thread_local! {
    static ROWS_DRAWN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Rows drawn by every [`MinibatchSampler`] on this thread so far. The
/// [`Runner`](crate::run::Runner) reads it around `init` and each `step` to count
/// [`Counts::draws`](super::Counts::draws).
pub fn rows_drawn() -> u64 {
    ROWS_DRAWN.with(std::cell::Cell::get)
}

/// A seeded stream of minibatches over `0..n`.
///
/// The epoch permutation is a pure function of (seed, epoch), so the serialized form is a few
/// integers plus the RNG of the with-replacement mode, whatever n is, and resuming from it is
/// bit-exact. [`draw`](Self::draw) reuses an internal buffer: no allocation after construction
/// except one permutation refresh per epoch (in place).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "SamplerRepr", into = "SamplerRepr")]
pub struct MinibatchSampler {
    n: usize,
    batch_size: usize,
    mode: SamplingMode,
    seed: u64,
    epoch: u64,
    pos: usize,
    rng: Rng,
    perm: Vec<usize>,
    batch: Vec<usize>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplerRepr {
    n: usize,
    batch_size: usize,
    mode: SamplingMode,
    seed: u64,
    epoch: u64,
    pos: usize,
    rng: Rng,
}

impl From<MinibatchSampler> for SamplerRepr {
    fn from(s: MinibatchSampler) -> Self {
        SamplerRepr {
            n: s.n,
            batch_size: s.batch_size,
            mode: s.mode,
            seed: s.seed,
            epoch: s.epoch,
            pos: s.pos,
            rng: s.rng,
        }
    }
}

impl TryFrom<SamplerRepr> for MinibatchSampler {
    type Error = String;
    /// A restored sampler, checked: a checkpoint that was edited or written for other data must
    /// be refused with a message, never index out of bounds later or abort on allocation.
    fn try_from(r: SamplerRepr) -> std::result::Result<Self, String> {
        if r.n == 0 || r.batch_size == 0 {
            return Err(format!(
                "sampler with n = {} and batch_size = {}: both must be >= 1",
                r.n, r.batch_size
            ));
        }
        // Clipped as in `new`: `draw` relies on batch_size ≤ n (a contiguous block wraps once).
        let n = r.n;
        let batch_size = r.batch_size.min(n);
        let perm_len = match r.mode.order() {
            SamplingMode::Contiguous => n.div_ceil(batch_size),
            SamplingMode::WithReplacement => 0,
            _ => n,
        };
        if r.pos > perm_len {
            return Err(format!(
                "sampler position {} is past the end of its epoch ({perm_len})",
                r.pos
            ));
        }
        let mut s = MinibatchSampler {
            n,
            batch_size,
            mode: r.mode,
            seed: r.seed,
            epoch: r.epoch,
            pos: r.pos,
            rng: r.rng,
            perm: Vec::new(),
            batch: Vec::new(),
        };
        s.try_allocate()
            .map_err(|e| format!("sampler over n = {n} samples: {e}"))?;
        s.refresh_permutation();
        Ok(s)
    }
}

impl MinibatchSampler {
    /// A sampler of batches of `batch_size` indices in `0..n`. A `batch_size` > n is clipped to
    /// n, with a [warning](crate::core::warnings) (the run's summary reports it).
    pub fn new(n: usize, batch_size: usize, mode: SamplingMode, seed: u64) -> Result<Self> {
        if n == 0 {
            return Err(Error::config(
                "batch_size",
                "cannot sample from zero samples",
            ));
        }
        if batch_size == 0 {
            return Err(Error::config("batch_size", "must be >= 1"));
        }
        if batch_size > n {
            super::warnings::warn(format!(
                "batch_size = {batch_size} exceeds the {n} samples it draws from: each batch is \
                 clipped to {n}"
            ));
        }
        let mut s = MinibatchSampler {
            n,
            batch_size: batch_size.min(n),
            mode,
            seed,
            epoch: 0,
            pos: 0,
            rng: rng_from_seed(seed, u64::MAX),
            perm: Vec::new(),
            batch: Vec::new(),
        };
        s.allocate();
        s.refresh_permutation();
        Ok(s)
    }

    fn allocate(&mut self) {
        self.try_allocate()
            .expect("invariant: a sampler over samples that exist can be allocated");
    }

    /// Allocates the permutation and the batch buffer, failing (instead of aborting) when they
    /// do not fit in memory.
    fn try_allocate(&mut self) -> std::result::Result<(), std::collections::TryReserveError> {
        let perm_len = match self.mode.order() {
            SamplingMode::Contiguous => self.n.div_ceil(self.batch_size),
            SamplingMode::WithReplacement => 0,
            _ => self.n,
        };
        let mut perm = Vec::new();
        perm.try_reserve_exact(perm_len)?;
        perm.extend(0..perm_len);
        let mut batch = Vec::new();
        batch.try_reserve_exact(self.batch_size)?;
        batch.resize(self.batch_size, 0);
        self.perm = perm;
        self.batch = batch;
        Ok(())
    }

    /// Regenerates the current epoch's permutation from (seed, epoch), in place.
    fn refresh_permutation(&mut self) {
        if self.perm.is_empty() {
            return;
        }
        for (i, p) in self.perm.iter_mut().enumerate() {
            *p = i;
        }
        if self.epoch == 0 && self.mode.first_epoch_ordered() {
            return; // the first epoch in file order
        }
        let mut epoch_rng = rng_from_seed(self.seed, self.epoch);
        shuffle(&mut epoch_rng, &mut self.perm);
    }

    fn next_epoch(&mut self) {
        self.epoch += 1;
        self.pos = 0;
        self.refresh_permutation();
    }

    /// The number of samples n.
    pub fn n(&self) -> usize {
        self.n
    }
    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// Completed epochs.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The next minibatch (a view into an internal buffer).
    pub fn draw(&mut self) -> &[usize] {
        ROWS_DRAWN.with(|rows| rows.set(rows.get() + self.batch_size as u64));
        match self.mode.order() {
            SamplingMode::Shuffled | SamplingMode::ShuffledOrderedFirst => {
                for k in 0..self.batch_size {
                    if self.pos == self.n {
                        self.next_epoch();
                    }
                    self.batch[k] = self.perm[self.pos];
                    self.pos += 1;
                }
            }
            SamplingMode::WithReplacement => {
                for k in 0..self.batch_size {
                    self.batch[k] = uniform_below(&mut self.rng, self.n);
                }
            }
            SamplingMode::Contiguous | SamplingMode::ContiguousOrderedFirst => {
                if self.pos == self.perm.len() {
                    self.next_epoch();
                }
                let start = self.perm[self.pos] * self.batch_size;
                self.pos += 1;
                // start < n and batch_size <= n: the block runs start.. up to n, then wraps to
                // 0.. (two plain counting loops, no division or comparison per index: a `%`
                // here was 5 % of a SOBA step).
                let (head, tail) = self
                    .batch
                    .split_at_mut((self.n - start).min(self.batch_size));
                for (k, slot) in head.iter_mut().enumerate() {
                    *slot = start + k;
                }
                for (k, slot) in tail.iter_mut().enumerate() {
                    *slot = k;
                }
            }
        }
        &self.batch
    }

    /// Writes the next minibatch into `out` (resized to the batch size).
    pub fn draw_into(&mut self, out: &mut Vec<usize>) {
        let batch = self.draw();
        out.clear();
        out.extend_from_slice(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_epoch_covers_every_sample_once() {
        let mut s = MinibatchSampler::new(10, 5, SamplingMode::Shuffled, 7).unwrap();
        let mut seen: Vec<usize> = s.draw().to_vec();
        seen.extend_from_slice(s.draw());
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // The next epoch is a different permutation of the same set.
        let mut e2: Vec<usize> = s.draw().to_vec();
        e2.extend_from_slice(s.draw());
        assert_eq!(s.epoch(), 1);
        let mut sorted = e2.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn contiguous_batches_are_blocks() {
        let mut s = MinibatchSampler::new(10, 4, SamplingMode::Contiguous, 1).unwrap();
        let mut starts = Vec::new();
        for _ in 0..3 {
            let b = s.draw().to_vec();
            for w in b.windows(2) {
                assert_eq!(w[1], (w[0] + 1) % 10);
            }
            starts.push(b[0]);
        }
        starts.sort_unstable();
        assert_eq!(starts, vec![0, 4, 8]);
    }

    #[test]
    fn with_replacement_stays_in_range() {
        let s = MinibatchSampler::new(3, 50, SamplingMode::WithReplacement, 2).unwrap();
        assert_eq!(s.batch_size(), 3, "batch size is clipped to n");
        let mut s = MinibatchSampler::new(300, 50, SamplingMode::WithReplacement, 2).unwrap();
        assert!(s.draw().iter().all(|&i| i < 300));
    }

    #[test]
    fn serde_round_trip_continues_the_same_stream() {
        for mode in [
            SamplingMode::Shuffled,
            SamplingMode::WithReplacement,
            SamplingMode::Contiguous,
        ] {
            let mut a = MinibatchSampler::new(37, 8, mode, 99).unwrap();
            for _ in 0..7 {
                a.draw();
            }
            let json = serde_json::to_string(&a).unwrap();
            let mut b: MinibatchSampler = serde_json::from_str(&json).unwrap();
            for _ in 0..20 {
                assert_eq!(a.draw(), b.draw(), "{mode:?}");
            }
        }
    }

    #[test]
    fn a_restored_sampler_is_checked() {
        let a = MinibatchSampler::new(37, 8, SamplingMode::Shuffled, 99).unwrap();
        let json = serde_json::to_value(&a).unwrap();
        for (field, value, needle) in [
            ("pos", serde_json::json!(38), "past the end"),
            ("n", serde_json::json!(0), "must be >= 1"),
            ("batch_size", serde_json::json!(0), "must be >= 1"),
            ("n", serde_json::json!(1u64 << 62), "sampler over n"),
        ] {
            let mut bad = json.clone();
            bad[field] = value;
            let e = serde_json::from_value::<MinibatchSampler>(bad).unwrap_err();
            assert!(e.to_string().contains(needle), "{field}: {e}");
        }
    }

    #[test]
    fn an_ordered_first_epoch_is_file_order_then_shuffled() {
        let mut s = MinibatchSampler::new(12, 4, SamplingMode::ContiguousOrderedFirst, 5).unwrap();
        let first: Vec<usize> = (0..3).map(|_| s.draw()[0]).collect();
        assert_eq!(first, [0, 4, 8], "blocks in file order");
        let later: Vec<Vec<usize>> = (0..12)
            .map(|_| (0..3).map(|_| s.draw()[0]).collect())
            .collect();
        assert!(
            later.iter().any(|e| e != &first),
            "later epochs are shuffled"
        );
        let mut s = MinibatchSampler::new(6, 2, SamplingMode::ShuffledOrderedFirst, 5).unwrap();
        let first: Vec<usize> = (0..3).flat_map(|_| s.draw().to_vec()).collect();
        assert_eq!(first, [0, 1, 2, 3, 4, 5]);
        // Serialised as a table, plain modes as before.
        let json = serde_json::to_value(SamplingMode::ContiguousOrderedFirst).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"mode": "contiguous", "first_epoch": "ordered"})
        );
        assert_eq!(
            serde_json::from_value::<SamplingMode>(json).unwrap(),
            SamplingMode::ContiguousOrderedFirst
        );
        assert_eq!(
            serde_json::to_value(SamplingMode::Contiguous).unwrap(),
            serde_json::json!("contiguous")
        );
        let bad = serde_json::json!({"mode": "with_replacement", "first_epoch": "ordered"});
        assert!(serde_json::from_value::<SamplingMode>(bad).is_err());
        assert!(serde_json::from_value::<SamplingMode>(serde_json::json!("sorted")).is_err());
    }

    #[test]
    fn rejects_empty_inputs() {
        assert!(MinibatchSampler::new(0, 4, SamplingMode::Shuffled, 0).is_err());
        assert!(MinibatchSampler::new(4, 0, SamplingMode::Shuffled, 0).is_err());
    }
}

/// The four minibatch streams of an implicit-differentiation method: inner steps and Hessian
/// products on g, outer gradients on f, cross products on g (AID/AmIGO/stocBiO-style estimators,
/// LancBiO, SubBiO).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OracleSamplers {
    /// Inner steps (on g).
    pub inner: MinibatchSampler,
    /// Outer gradients (on f).
    pub outer: MinibatchSampler,
    /// Hessian-vector products (on g).
    pub hessian: MinibatchSampler,
    /// Cross products (on g).
    pub cross: MinibatchSampler,
}

impl OracleSamplers {
    /// Batches of `batch_size` drawn in `mode` over the samples of g and f, seeded in the order
    /// inner, outer, Hessian, cross from `rng`.
    pub fn new(
        n_g: usize,
        n_f: usize,
        batch_size: usize,
        mode: SamplingMode,
        rng: &mut Rng,
    ) -> Result<Self> {
        use rand::Rng as _;
        let mut make = |n| MinibatchSampler::new(n, batch_size, mode, rng.next_u64());
        Ok(Self {
            inner: make(n_g)?,
            outer: make(n_f)?,
            hessian: make(n_g)?,
            cross: make(n_g)?,
        })
    }

    /// The samplers of a stochastic configuration over `problem`'s g and f (`batch_size`
    /// given), or `None` for full batches, seeded as in [`new`](Self::new).
    pub fn for_problem(
        problem: &super::Problem,
        batch_size: Option<usize>,
        mode: SamplingMode,
        rng: &mut Rng,
    ) -> Result<Option<Self>> {
        batch_size
            .map(|bs| {
                Self::new(
                    problem.g().n_samples(),
                    problem.f().n_samples(),
                    bs,
                    mode,
                    rng,
                )
            })
            .transpose()
    }
}
