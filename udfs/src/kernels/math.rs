//! Element-wise functions in single precision, written without branches or library calls so
//! that loops over them vectorise (see [`super::vectorized`]).
//!
//! Accuracy (checked by the tests against double precision): `exp` within 2 ulp over its whole
//! range; `erf`, `tanh` and `sigmoid` within a few 1e-7; GELU inherits erf's bound. Predictions are compared with the reference libraries at 1e-5 or tighter.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding it rounds a float of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

/// `e^x`: correctly saturating to 0 (through the subnormals) and `+inf`; NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Range reduction: x = k ln2 + r, |r| <= ln2 / 2, then a Cephes minimax polynomial for e^r.
    let xc = x.clamp(-104.0, 88.722_84);
    let kf = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - kf * LN2_HI - kf * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r2 + r + 1.0;
    // Scale by 2^k in two halves, each a normal power of two, so that k from -150 to 128
    // (subnormal results and the top of the range) needs no branch. k's bits come from the
    // rounding constant's mantissa (a float-to-int conversion would not vectorise as well).
    let k = (xc * LOG2E + ROUND).to_bits() as i32 - ROUND.to_bits() as i32;
    let half = k >> 1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) << 23) as u32);
    let scaled = y * pow2(half) * pow2(k - half);
    if x.is_nan() {
        x
    } else if x > 88.722_84 {
        f32::INFINITY
    } else {
        scaled
    }
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The hyperbolic tangent.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // tanh(x) = sign(x) (1 - e^-2|x|) / (1 + e^-2|x|); small |x| uses its odd series, where the
    // subtraction would lose relative precision.
    let a = x.abs();
    let e = exp(-2.0 * a);
    let big = (1.0 - e) / (1.0 + e);
    let x2 = x * x;
    let small = a * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
    let t = if a < 0.0625 { small } else { big };
    t.copysign(x)
}

/// The error function.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // |x| < 0.75: the Maclaurin series to x^17. Beyond: 1 - erfc(|x|), with erfc from Numerical
    // Recipes' Chebyshev fit (relative error below 1.2e-7 everywhere).
    let a = x.abs();
    let x2 = x * x;
    let series = (((((((1.0 / 685_440.0 * x2 - 1.0 / 75_600.0) * x2 + 1.0 / 9_360.0) * x2
        - 1.0 / 1_320.0)
        * x2
        + 1.0 / 216.0)
        * x2
        - 1.0 / 42.0)
        * x2
        + 1.0 / 10.0)
        * x2
        - 1.0 / 3.0)
        * x2
        + 1.0;
    let near = a * std::f32::consts::FRAC_2_SQRT_PI * series;
    let t = 1.0 / (1.0 + 0.5 * a);
    let p = ((((((((0.170_872_77 * t - 0.822_152_23) * t + 1.488_515_9) * t - 1.135_204) * t
        + 0.278_868_07)
        * t
        - 0.186_288_06)
        * t
        + 0.096_784_18)
        * t
        + 0.374_091_96)
        * t
        + 1.000_023_7)
        * t
        - 1.265_512_2;
    let far = 1.0 - t * exp(p - a * a);
    let e = if a < 0.75 { near } else { far };
    e.copysign(x)
}

/// GELU with the exact (erf) form, as BERT and PyTorch's default use it.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU with the tanh approximation (`gelu_new`, PyTorch's `approximate="tanh"`).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + tanh(0.797_884_6 * (x + 0.044_715 * x * x * x)))
}

/// `max(x, 0)`.
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    x.max(0.0)
}

/// An element-wise function [`map_in_place`] can vectorise. It is a type rather than a function
/// value because a call through `Fn` goes through a shim that is compiled for the baseline
/// instruction set and not inlined into the dispatched loop, which then runs scalar.
pub trait Unary {
    /// The function at one value.
    fn apply(x: f32) -> f32;
}

macro_rules! unary {
    ($($name:ident => $f:ident),* $(,)?) => {$(
        #[doc = concat!("[`", stringify!($f), "`] as a [`Unary`].")]
        pub struct $name;
        impl Unary for $name {
            #[inline(always)]
            fn apply(x: f32) -> f32 {
                $f(x)
            }
        }
    )*};
}

unary!(Relu => relu, Sigmoid => sigmoid, Tanh => tanh, Gelu => gelu, GeluTanh => gelu_tanh);

/// Applies `F` to every value, vectorised.
pub fn map_in_place<F: Unary>(values: &mut [f32]) {
    struct Map<'a, F> {
        values: &'a mut [f32],
        f: std::marker::PhantomData<F>,
    }
    impl<F: Unary> pulp::WithSimd for Map<'_, F> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            for v in self.values.iter_mut() {
                *v = F::apply(*v);
            }
        }
    }
    super::vectorized(Map::<F> {
        values,
        f: std::marker::PhantomData,
    });
}

/// Softmax of each `width`-long row, in place.
pub fn softmax_rows(values: &mut [f32], width: usize) {
    struct Softmax<'a> {
        values: &'a mut [f32],
        width: usize,
    }
    impl pulp::WithSimd for Softmax<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            for row in self.values.chunks_exact_mut(self.width) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for v in row.iter_mut() {
                    *v = exp(*v - max);
                    sum += *v;
                }
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
    if width > 0 {
        super::vectorized(Softmax { values, width });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-20_000..=20_000).map(|i| i as f32 / 1000.0)
    }

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp() {
        for x in grid().chain((-1030..=887).map(|i| i as f32 / 10.0)) {
            let want = (f64::from(x)).exp() as f32;
            assert!(ulps(exp(x), want) <= 2, "exp({x}) = {} vs {want}", exp(x));
        }
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn derived_functions_match_double_precision() {
        for x in grid() {
            let xd = f64::from(x);
            let sig = 1.0 / (1.0 + (-xd).exp());
            assert!(
                (f64::from(sigmoid(x)) - sig).abs() <= 4e-7 * sig,
                "sigmoid({x})"
            );
            assert!((f64::from(tanh(x)) - xd.tanh()).abs() <= 3e-7, "tanh({x})");
            let erf_ref = libm_erf(xd);
            assert!(
                (f64::from(erf(x)) - erf_ref).abs() <= 2e-7,
                "erf({x}) = {} vs {erf_ref}",
                erf(x)
            );
            let gelu_ref = 0.5 * xd * (1.0 + libm_erf(xd / std::f64::consts::SQRT_2));
            assert!(
                (f64::from(gelu(x)) - gelu_ref).abs() <= 3e-7 * xd.abs().max(1.0),
                "gelu({x})"
            );
        }
    }

    /// erf in double precision (W. J. Cody's rational approximations are overkill here: the
    /// series and continued fraction below converge to 1e-15 on the test grid).
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 3.0 {
            // Maclaurin series.
            let mut term = a;
            let mut sum = a;
            for n in 1..200 {
                term *= -a * a / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // Continued fraction for erfc.
            let mut f = 0.0;
            for n in (1..60).rev() {
                f = n as f64 / 2.0 / (a + f);
            }
            1.0 - (-a * a).exp() / (a + f) / std::f64::consts::PI.sqrt()
        };
        v.copysign(x)
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let mut v = vec![1.0, 2.0, 3.0, -1000.0, 0.0, 1000.0];
        softmax_rows(&mut v, 3);
        assert!((v[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
        assert_eq!(v[5], 1.0);
    }
}
