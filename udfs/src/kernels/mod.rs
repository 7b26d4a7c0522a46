//! CPU kernels for the runtimes: a safe matrix multiply over the `gemm` crate, fused
//! element-wise functions that vectorise, and the thread budget they share.
//!
//! candle runs each element-wise operation as its own pass over memory and multiplies on its own
//! thread pool. On CPU, scorch's MLP and sentence encoder instead work on blocks of rows that stay
//! in cache, apply bias and activation in the same pass, and run one thread per DataFusion
//! partition (see [`threads`]). Element-wise loops are compiled once per instruction set and
//! picked at run time ([`vectorized`]), so one binary uses AVX-512 where the CPU has it and still
//! runs on any x86-64.

pub mod dense;
pub mod gemm;
pub mod math;
pub mod threads;

/// Runs `op` compiled for the best instruction set this CPU supports (AVX-512, AVX2+FMA, or the
/// baseline), so that the plain loops inside it are auto-vectorised at that width.
///
/// The loops must be in `op`'s `with_simd`, marked `#[inline(always)]`, and call only functions
/// marked `#[inline(always)]`: code that is not inlined into the dispatched function is compiled
/// for the baseline instruction set.
#[inline(always)]
pub fn vectorized<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    pulp::Arch::new().dispatch(op)
}
