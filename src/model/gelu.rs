//! The MLP nonlinearities GELU (tanh form) and SiLU on the CPU: vectorised,
//! and split over the threads.
//!
//! candle computes both one element at a time through libm (`tanhf`,
//! `expf`) on one thread. In a patching sweep on GPT-2 that scalar `tanh`
//! was about 8% of all CPU time, and with the matrix multiplies spread over
//! the threads it was also a serial stretch of every block. Here both are
//! written through one exponential,
//!
//! - `gelu(v) = v / (1 + e^(-2u))`, `u = sqrt(2/π) (v + 0.044715 v³)`
//!   (the identity `(1 + tanh u) / 2 = 1 / (1 + e^(-2u))`),
//! - `silu(v) = v / (1 + e^(-v))`,
//!
//! with an `exp` made of plain arithmetic (range reduction by `ln 2`, a
//! degree-7 polynomial, the exponent set through the bits) that the
//! compiler turns into SIMD code. The results agree with the exact
//! functions to a few units in the last place (the tests check against an
//! f64 computation); they are not bit-identical to candle's, and in GELU's
//! negative tail, where `1 + tanh u` cancels in candle's form, they are the
//! more accurate. Used for f32 tensors on the CPU that carry no gradient;
//! gradient methods keep candle's ops and their backward passes.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result as CResult, Shape, Tensor};

/// Below this many elements one thread is faster than starting more.
const MIN_PARALLEL: usize = 1 << 16;

/// `sqrt(2 / pi)`, as candle writes it.
const SQRT_TWO_OVER_PI_F32: f32 = 0.797_884_6;

/// `e^x` in f32 without branches or calls, so loops over it vectorise.
/// Below -87 the result is `e^-87` (callers add it to 1, which it no
/// longer changes); above 88, infinity.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    let overflow = x > 88.0;
    // 1.5 × 2^23: adding it rounds to an integer held in the mantissa.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 in two parts (Cody and Waite): the first has few enough bits
    // that `n * LN2_HI` is exact for every n used here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND; // round(x / ln 2)
    let r = (x - n * LN2_HI) - n * LN2_LO; // |r| <= ln 2 / 2
                                           // e^r by its Taylor series to r^7 (the next term is below 1e-8).
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n through the exponent bits; n is in [-126, 127].
    let k = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let e = p * f32::from_bits(((k + 127) << 23) as u32);
    if overflow {
        f32::INFINITY
    } else {
        e
    }
}

/// GELU, tanh form: `v / (1 + e^(-2u))`.
#[inline(always)]
fn gelu_f32(v: f32) -> f32 {
    let u = SQRT_TWO_OVER_PI_F32 * v * (1.0 + 0.044715 * v * v);
    v / (1.0 + exp_f32(-2.0 * u))
}

/// SiLU: `v / (1 + e^(-v))`.
#[inline(always)]
fn silu_f32(v: f32) -> f32 {
    v / (1.0 + exp_f32(-v))
}

/// Which function [`Elementwise`] applies.
#[derive(Debug, Clone, Copy)]
enum Act {
    Gelu,
    Silu,
}

impl Act {
    fn apply(self, src: &[f32], out: &mut [f32]) {
        // One loop per function, each simple enough to vectorise.
        match self {
            Act::Gelu => out.iter_mut().zip(src).for_each(|(o, &i)| *o = gelu_f32(i)),
            Act::Silu => out.iter_mut().zip(src).for_each(|(o, &i)| *o = silu_f32(i)),
        }
    }
}

/// `x.gelu()` (the tanh form), vectorised and threaded for f32 CPU tensors
/// without a gradient; candle's op otherwise.
pub fn gelu_tanh(x: &Tensor) -> CResult<Tensor> {
    match fast(x) {
        Some(threads) => x.contiguous()?.apply_op1_no_bwd(&Elementwise {
            act: Act::Gelu,
            threads,
        }),
        None => x.gelu(),
    }
}

/// `x.silu()`, vectorised and threaded for f32 CPU tensors without a
/// gradient; candle's op otherwise.
pub fn silu(x: &Tensor) -> CResult<Tensor> {
    match fast(x) {
        Some(threads) => x.contiguous()?.apply_op1_no_bwd(&Elementwise {
            act: Act::Silu,
            threads,
        }),
        None => x.silu(),
    }
}

/// The threads to use when `x` can take the fast path.
fn fast(x: &Tensor) -> Option<usize> {
    let usable = x.device().is_cpu() && x.dtype() == DType::F32 && !x.track_op();
    usable.then(|| match x.elem_count() >= MIN_PARALLEL {
        true => candle_core::utils::get_num_threads().max(1),
        false => 1,
    })
}

struct Elementwise {
    act: Act,
    threads: usize,
}

impl CustomOp1 for Elementwise {
    fn name(&self) -> &'static str {
        match self.act {
            Act::Gelu => "fast-gelu",
            Act::Silu => "fast-silu",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((start, end))) = (s, l.contiguous_offsets()) else {
            candle_core::bail!("{}: expects a contiguous f32 tensor", self.name());
        };
        let src = &v[start..end];
        let mut out = vec![0f32; src.len()];
        if self.threads <= 1 {
            self.act.apply(src, &mut out);
        } else {
            let chunk = src.len().div_ceil(self.threads).max(1);
            std::thread::scope(|sc| {
                for (o, i) in out.chunks_mut(chunk).zip(src.chunks(chunk)) {
                    sc.spawn(move || self.act.apply(i, o));
                }
            });
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Values over the whole range: large negatives (where GELU underflows
    /// to -0), the curved middle, large positives, and exact zero.
    fn values(n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n)
            .map(|i| ((i as f32) * 0.37).sin() * 12.0 + (i % 7) as f32 * 1e-3)
            .collect();
        v.extend([
            0.0, -0.0, 1e-20, -1e-20, 30.0, -30.0, 100.0, -100.0, 1e30, -1e30,
        ]);
        v
    }

    /// In the stable form: `0.5 v (1 + tanh u)` loses everything to
    /// cancellation once `tanh u` rounds to -1, even in f64.
    fn gelu_f64(v: f64) -> f64 {
        let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
        v / (1.0 + (-2.0 * u).exp())
    }

    fn silu_f64(v: f64) -> f64 {
        v / (1.0 + (-v).exp())
    }

    /// The largest error of `f` against `exact` over `xs`, in ulps.
    fn max_ulps(f: fn(f32) -> f32, exact: fn(f64) -> f64, xs: &[f32]) -> f64 {
        xs.iter()
            .map(|&x| ulps(f(x), exact(x as f64)))
            .fold(0.0, f64::max)
    }

    #[test]
    fn exp_is_within_two_ulps() {
        let xs: Vec<f32> = (-8700..8800).map(|i| i as f32 * 0.01 + 0.003).collect();
        let worst = max_ulps(exp_f32, f64::exp, &xs);
        assert!(worst <= 2.0, "exp: {worst} ulps");
    }

    /// The error of `got` against `want`, in units of the f32 spacing at
    /// `want`; values within 1e-37 of zero count as equal.
    fn ulps(got: f32, want: f64) -> f64 {
        (got as f64 - want).abs() / (want.abs() * f32::EPSILON as f64).max(1e-37)
    }

    /// candle's GELU, `0.5 v (1 + tanh u)` in f32.
    fn gelu_candle(v: f32) -> f32 {
        0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI_F32 * v * (1.0 + 0.044715 * v * v)))
    }

    #[test]
    fn gelu_and_silu_match_the_exact_functions() {
        let xs = values(200_000);
        let s = max_ulps(silu_f32, silu_f64, &xs);
        assert!(s <= 8.0, "silu: {s} ulps");
        // GELU where it is well conditioned (above -1): a few ulps, from the sum and
        // the division after the exponential.
        let middle: Vec<f32> = xs.iter().copied().filter(|&x| x > -1.0).collect();
        let g = max_ulps(gelu_f32, gelu_f64, &middle);
        assert!(g <= 8.0, "gelu above -1: {g} ulps");
        // Below, the result is v e^(-2u) / (1 + e^(-2u)), and the rounding
        // of u in f32 alone moves it by many ulps, in candle's form too
        // (where `1 + tanh u` also cancels). There: never far worse than
        // candle at any point, and better on average.
        let (mut ours_sum, mut theirs_sum) = (0.0, 0.0);
        for &x in &xs {
            let want = gelu_f64(x as f64);
            let (ours, theirs) = (ulps(gelu_f32(x), want), ulps(gelu_candle(x), want));
            assert!(
                ours <= (2.0 * theirs).max(16.0),
                "gelu({x}): {ours} ulps, candle {theirs}"
            );
            ours_sum += ours;
            theirs_sum += theirs;
        }
        assert!(
            ours_sum <= theirs_sum,
            "mean ulps: {ours_sum} against candle's {theirs_sum}"
        );
        // Not-a-number stays so (the clamp inside exp must not hide it).
        assert!(gelu_f32(f32::NAN).is_nan() && silu_f32(f32::NAN).is_nan());
        assert_eq!(gelu_f32(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn the_ops_agree_with_candles_whatever_the_threads_and_layout() {
        let v = values(MIN_PARALLEL * 3);
        let n = v.len();
        let x = Tensor::from_vec(v, (n / 2, 2), &Device::Cpu).unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            a.iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs() / q.abs().max(1.0))
                .fold(0f32, f32::max)
        };
        for threads in [1, 2, 3, 7] {
            for (act, want) in [(Act::Gelu, x.gelu()), (Act::Silu, x.silu())] {
                let ours = x.apply_op1_no_bwd(&Elementwise { act, threads }).unwrap();
                let d = close(&ours, &want.unwrap());
                assert!(d < 1e-6, "{act:?} on {threads} threads: {d}");
            }
        }
        // A transposed (strided) input is made contiguous first.
        let t = x.t().unwrap();
        assert!(close(&gelu_tanh(&t).unwrap(), &t.gelu().unwrap()) < 1e-6);
        assert!(close(&silu(&t).unwrap(), &t.silu().unwrap()) < 1e-6);
    }
}
