//! Step-size and weight schedules: constant, c/(t+t₀)^a, and the clamped decay
//! max(min, c/(t+t₀)^a).

use serde::{Deserialize, Deserializer, Serialize};

use super::error::{Error, Result};

/// A schedule t ↦ value, t = 0, 1, 2, … the outer iteration.
///
/// In configs a bare number is a constant: `outer_lr = 0.1` equals
/// `outer_lr = { kind = "constant", c = 0.1 }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// c.
    Constant {
        /// The value.
        c: f64,
    },
    /// c / (t + t₀)^a (benchopt's form has t₀ = 1; MRBO's d/(m + k)^{1/3} has t₀ = m).
    InvPower {
        /// Scale c.
        c: f64,
        /// Exponent a ≥ 0.
        a: f64,
        /// Offset t₀ > 0 (default 1).
        t0: f64,
    },
    /// max(min, c / (t + t₀)^a) (LancBiO's code: λ_k = max(λ_min, λ / k^b)).
    Clamped {
        /// Scale c.
        c: f64,
        /// Exponent a ≥ 0.
        a: f64,
        /// Offset t₀ > 0 (default 1).
        t0: f64,
        /// Floor.
        min: f64,
    },
}

impl Schedule {
    /// A constant schedule.
    pub const fn constant(c: f64) -> Self {
        Schedule::Constant { c }
    }
    /// c / (t + 1)^a.
    pub const fn inv_power(c: f64, a: f64) -> Self {
        Schedule::InvPower { c, a, t0: 1.0 }
    }
    /// The value at iteration `t`.
    #[inline]
    pub fn at(&self, t: u64) -> f64 {
        match *self {
            Schedule::Constant { c } => c,
            Schedule::InvPower { c, a, t0 } => c / (t as f64 + t0).powf(a),
            Schedule::Clamped { c, a, t0, min } => (c / (t as f64 + t0).powf(a)).max(min),
        }
    }
    /// The scale c (the value at t = 0 when t₀ = 1).
    pub fn scale(&self) -> f64 {
        match *self {
            Schedule::Constant { c }
            | Schedule::InvPower { c, .. }
            | Schedule::Clamped { c, .. } => c,
        }
    }
    /// Checks the parameters, naming `field` on failure.
    pub fn validate(&self, field: &str) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    format!("{field}.{name}"),
                    format!("must be finite and > 0, got {v}"),
                ))
            }
        };
        let non_negative = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    format!("{field}.{name}"),
                    format!("must be finite and >= 0, got {v}"),
                ))
            }
        };
        match *self {
            Schedule::Constant { c } => positive("c", c),
            Schedule::InvPower { c, a, t0 } => {
                positive("c", c)?;
                non_negative("a", a)?;
                positive("t0", t0)
            }
            Schedule::Clamped { c, a, t0, min } => {
                positive("c", c)?;
                non_negative("a", a)?;
                positive("t0", t0)?;
                non_negative("min", min)
            }
        }
    }
}

fn default_t0() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum TaggedSchedule {
    Constant {
        c: f64,
    },
    InvPower {
        c: f64,
        a: f64,
        #[serde(default = "default_t0")]
        t0: f64,
    },
    Clamped {
        c: f64,
        a: f64,
        #[serde(default = "default_t0")]
        t0: f64,
        min: f64,
    },
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Schedule;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a number (constant) or a table with `kind` = \"constant\" | \"inv_power\" \
                     | \"clamped\"",
                )
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Schedule, E> {
                Ok(Schedule::Constant { c: v })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Schedule, E> {
                Ok(Schedule::Constant { c: v as f64 })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Schedule, E> {
                Ok(Schedule::Constant { c: v as f64 })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Schedule, A::Error> {
                let tagged =
                    TaggedSchedule::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(match tagged {
                    TaggedSchedule::Constant { c } => Schedule::Constant { c },
                    TaggedSchedule::InvPower { c, a, t0 } => Schedule::InvPower { c, a, t0 },
                    TaggedSchedule::Clamped { c, a, t0, min } => {
                        Schedule::Clamped { c, a, t0, min }
                    }
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_formulas() {
        assert_eq!(Schedule::constant(0.3).at(1000), 0.3);
        let s = Schedule::inv_power(1.0, 0.5);
        assert_eq!(s.at(0), 1.0);
        assert_eq!(s.at(3), 0.5);
        let m = Schedule::InvPower {
            c: 2.0,
            a: 1.0 / 3.0,
            t0: 8.0,
        };
        assert!((m.at(0) - 1.0).abs() < 1e-15);
        let c = Schedule::Clamped {
            c: 1.0,
            a: 1.0,
            t0: 1.0,
            min: 0.1,
        };
        assert_eq!(c.at(1), 0.5);
        assert_eq!(c.at(100), 0.1);
    }

    #[test]
    fn deserializes_numbers_and_tables_and_rejects_typos() {
        let s: Schedule = serde_json::from_str("0.25").unwrap();
        assert_eq!(s, Schedule::constant(0.25));
        let s: Schedule = serde_json::from_str(r#"{"kind":"inv_power","c":1,"a":0.5}"#).unwrap();
        assert_eq!(s, Schedule::inv_power(1.0, 0.5));
        let err = serde_json::from_str::<Schedule>(r#"{"kind":"inv_power","c":1,"alpha":0.5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("alpha"), "{err}");
        let err = Schedule::InvPower {
            c: 1.0,
            a: -1.0,
            t0: 1.0,
        }
        .validate("outer_lr")
        .unwrap_err()
        .to_string();
        assert!(err.contains("outer_lr.a"), "{err}");
    }
}
