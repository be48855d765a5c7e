//! GELU (tanh form) over every thread on the CPU.
//!
//! candle computes element-wise ops on one thread, so with the matrix
//! multiplies spread over all threads, GPT-2's MLP nonlinearity (a scalar
//! `tanh` per element of `[tokens, d_mlp]`) became a serial stretch of
//! every block: about a tenth of a patching sweep's time on two threads,
//! while the other thread waited. This op splits the elements over the
//! threads and applies candle's own formula to each, so the values are
//! bit for bit those of `Tensor::gelu`. It is used only where it can be:
//! an f32 tensor on the CPU that carries no gradient (training and
//! gradient methods keep candle's op and its backward) and is large
//! enough for the threads to pay.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result as CResult, Shape, Tensor};

/// Below this many elements one thread is faster than starting more.
const MIN_PARALLEL: usize = 1 << 16;

/// `sqrt(2 / pi)`, as candle writes it.
const SQRT_TWO_OVER_PI_F32: f32 = 0.797_884_6;

/// candle's `Gelu::f32`, the same expression (Rust never contracts it
/// into fused multiply-adds, so the results are identical).
#[inline]
fn gelu_f32(v: f32) -> f32 {
    0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI_F32 * v * (1.0 + 0.044715 * v * v)))
}

/// `x.gelu()`, on every thread when `x` is a large f32 CPU tensor without
/// a gradient.
pub fn gelu_tanh(x: &Tensor) -> CResult<Tensor> {
    let threads = candle_core::utils::get_num_threads();
    if threads > 1
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && !x.track_op()
        && x.elem_count() >= MIN_PARALLEL
    {
        x.contiguous()?.apply_op1_no_bwd(&ParallelGelu { threads })
    } else {
        x.gelu()
    }
}

struct ParallelGelu {
    threads: usize,
}

impl CustomOp1 for ParallelGelu {
    fn name(&self) -> &'static str {
        "parallel-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((start, end))) = (s, l.contiguous_offsets()) else {
            candle_core::bail!("parallel gelu: expects a contiguous f32 tensor");
        };
        let src = &v[start..end];
        let mut out = vec![0f32; src.len()];
        let chunk = src.len().div_ceil(self.threads);
        std::thread::scope(|sc| {
            for (o, i) in out.chunks_mut(chunk).zip(src.chunks(chunk)) {
                sc.spawn(move || {
                    for (o, &i) in o.iter_mut().zip(i) {
                        *o = gelu_f32(i);
                    }
                });
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Values over GELU's whole range: large negatives (where it
    /// underflows to -0), the curved middle, large positives.
    fn inputs(n: usize) -> Tensor {
        let v: Vec<f32> = (0..n)
            .map(|i| ((i as f32) * 0.37).sin() * 12.0 + (i % 7) as f32 * 1e-3)
            .collect();
        Tensor::from_vec(v, (n / 4, 4), &Device::Cpu).unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn parallel_gelu_is_bit_identical_to_candles() {
        let x = inputs(MIN_PARALLEL * 3 + 4 * 5);
        for threads in [2, 3, 7] {
            let ours = x.apply_op1_no_bwd(&ParallelGelu { threads }).unwrap();
            assert_eq!(bits(&ours), bits(&x.gelu().unwrap()), "{threads} threads");
        }
        // A transposed (strided) input is made contiguous first.
        let t = x.t().unwrap();
        assert_eq!(bits(&gelu_tanh(&t).unwrap()), bits(&t.gelu().unwrap()));
    }
}
