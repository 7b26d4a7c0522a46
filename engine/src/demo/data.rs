//! The demo's synthetic feature table: a seeded generator whose every value is computed with
//! IEEE arithmetic and scorch's own `exp` and `ln` (no platform math library, whose last bits
//! differ between CPUs), so the same seed gives the same bytes on every machine.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::FEATURES;
use crate::error::{Error, Result};

const REGIONS: [&str; 4] = ["APAC", "EU", "LATAM", "NA"];

/// `e^x` from a range reduction and a Taylor series: the same result on every machine.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    if x < -745.0 {
        return 0.0;
    }
    // Cody and Waite's reduction: ln 2 split so that k * LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    let k = (x / std::f64::consts::LN_2).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 1..=24 {
        term *= r / n as f64;
        sum += term;
    }
    // 2^k, in two steps so that each factor is a normal number.
    let half = (k / 2.0).trunc();
    sum * pow2(half as i32) * pow2((k - half) as i32)
}

fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// Natural logarithm from the exponent and an `atanh` series: the same result on every machine.
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x < f64::MIN_POSITIVE {
        // Subnormal: scale into the normal range first.
        return ln(x * pow2(54)) - 54.0 * std::f64::consts::LN_2;
    }
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for n in 0..30 {
        sum += term / (2 * n + 1) as f64;
        term *= s2;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}

/// SplitMix64: a tiny, portable, seedable generator (the demo must not depend on a crate's
/// notion of a stable stream).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal, by Marsaglia's polar method (square roots and logarithms only).
    pub fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * ln(s) / s).sqrt();
            }
        }
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One day of the feature table, column by column.
pub struct Day {
    /// Customer ids.
    pub customer_id: Vec<i64>,
    /// Regions.
    pub region: Vec<&'static str>,
    /// Feature columns, in [`FEATURES`] order (`None`: missing).
    pub features: Vec<Vec<Option<f32>>>,
    /// Labels.
    pub churned: Vec<bool>,
}

/// One day of `rows` customers, ids from `first_id`.
pub fn generate_day(rng: &mut Rng, rows: usize, first_id: i64) -> Day {
    let mut day = Day {
        customer_id: Vec::with_capacity(rows),
        region: Vec::with_capacity(rows),
        features: vec![Vec::with_capacity(rows); FEATURES.len()],
        churned: Vec::with_capacity(rows),
    };
    for i in 0..rows {
        let tenure = 1.0 + rng.below(72) as f64;
        let contract = [1.0, 12.0, 24.0][rng.below(3) as usize];
        let monthly = (70.0 + 25.0 * rng.normal()).clamp(18.0, 130.0);
        let total = tenure * monthly * (0.9 + 0.2 * rng.uniform());
        let calls = (rng.uniform() * rng.uniform() * 10.0).floor();
        let products = 1.0 + rng.below(5) as f64;
        let login = (-12.0 * ln(1.0 - rng.uniform())).min(180.0).floor();
        let session = exp(2.5 + 0.6 * rng.normal()).min(300.0);
        let failures = if rng.uniform() < 0.8 {
            0.0
        } else {
            1.0 + rng.below(4) as f64
        };
        let autopay = if rng.uniform() < 0.55 { 1.0 } else { 0.0 };
        let age = 18.0 + rng.below(63) as f64;
        let discount = if rng.uniform() < 0.7 {
            0.0
        } else {
            (rng.uniform() * 30.0).floor()
        };
        let logit = -1.6 + 0.55 * (calls - 2.0).max(0.0) + 0.035 * login - 0.035 * tenure
            + 0.7 * failures
            - 0.8 * autopay
            - 0.05 * contract
            + 0.012 * (monthly - 70.0)
            - 0.15 * (products - 1.0)
            + 0.6 * (if age < 30.0 && calls > 3.0 { 1.0 } else { 0.0 })
            - 0.02 * discount
            + 0.4 * rng.normal();
        let p = 1.0 / (1.0 + exp(-logit));
        let values = [
            tenure, monthly, total, calls, products, contract, login, session, failures, autopay,
            age, discount,
        ];
        for (column, v) in day.features.iter_mut().zip(values) {
            column.push(Some(v as f32));
        }
        // A few broken rows, as real feature pipelines have: a missing login date, a NaN charge.
        let r = rng.uniform();
        if r < 0.0007 {
            day.features[6][i] = None;
        } else if r < 0.001 {
            day.features[1][i] = Some(f32::NAN);
        }
        day.customer_id.push(first_id + i as i64);
        day.region
            .push(REGIONS[rng.below(REGIONS.len() as u64) as usize]);
        day.churned.push(rng.uniform() < p);
    }
    day
}

fn day_schema() -> Arc<Schema> {
    let mut fields = vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
    ];
    fields.extend(
        FEATURES
            .iter()
            .map(|f| Field::new(*f, DataType::Float32, true)),
    );
    fields.push(Field::new("churned", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// Writes one day sorted by region (so row-group statistics on `region` prune well).
pub fn write_day(day: &Day, path: &Path, row_group_rows: usize) -> Result<()> {
    let mut order: Vec<usize> = (0..day.customer_id.len()).collect();
    order.sort_by_key(|&i| (day.region[i], day.customer_id[i]));
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            order.iter().map(|&i| day.customer_id[i]),
        )),
        Arc::new(StringArray::from_iter_values(
            order.iter().map(|&i| day.region[i]),
        )),
    ];
    for feature in &day.features {
        columns.push(Arc::new(Float32Array::from_iter(
            order.iter().map(|&i| feature[i]),
        )));
    }
    columns.push(Arc::new(BooleanArray::from_iter(
        order.iter().map(|&i| Some(day.churned[i])),
    )));
    let batch = RecordBatch::try_new(day_schema(), columns).map_err(|source| Error::Parquet {
        path: path.display().to_string(),
        source: source.into(),
    })?;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
    let file = fs::File::create(path).map_err(io)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let parquet_err = |source| Error::Parquet {
        path: path.display().to_string(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(parquet_err)?;
    writer.write(&batch).map_err(parquet_err)?;
    writer.close().map_err(parquet_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_math_agrees_with_the_platform_within_a_few_ulps() {
        for x in [-20.0, -1.5, -0.1, 0.0, 0.3, 1.0, 2.5, 7.25, 40.0] {
            let (ours, libm) = (exp(x), f64::exp(x));
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm,
                "exp({x}): {ours} vs {libm}"
            );
        }
        for x in [1e-9, 0.01, 0.5, 0.999, 1.0, 1.5, 2.0, 10.0, 1e6] {
            let (ours, libm) = (ln(x), f64::ln(x));
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm.abs().max(1.0),
                "ln({x}): {ours} vs {libm}"
            );
        }
    }

    #[test]
    fn generator_is_deterministic() {
        let a = generate_day(&mut Rng(7), 100, 0);
        let b = generate_day(&mut Rng(7), 100, 0);
        assert_eq!(a.features, b.features);
        assert_eq!(a.churned, b.churned);
        let c = generate_day(&mut Rng(8), 100, 0);
        assert_ne!(a.features, c.features);
    }
}
