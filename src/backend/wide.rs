//! Loops compiled for the widest vector unit the CPU has, picked at run time: the release build
//! targets baseline x86-64 (SSE2, 4 lanes), while the machines burnbert trains on have AVX2 (8)
//! or AVX-512 (16). Rust never contracts `a·b + c` into a fused multiply-add, so a loop computes
//! the same bits whichever version runs.

use std::iter::Sum;
use std::ops::AddAssign;

/// Runs `body` compiled for AVX-512 (with its DQ, BW and VL parts: 64-bit multiplies, masks),
/// else AVX2 with FMA, else the baseline. `body` is inlined into each version only when it is
/// marked so: pass a closure as `wide::run(#[inline(always)] || …)`.
#[inline(always)]
pub fn run<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
        fn avx512<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        if has_avx512() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512(body) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(body) };
        }
    }
    body()
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
}

/// `Σ f(a[j], b[j])` in `L` running sums (`j mod L`), added up at the end: a sum the vectorizer
/// may spread over lanes (one running sum is a chain it must keep in order). `L` = 16 fills an
/// AVX-512 register with f32, 8 with f64.
#[inline(always)]
pub fn lane_sum<T, const L: usize>(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> T) -> T
where
    T: Copy + Default + AddAssign + Sum,
{
    assert_eq!(a.len(), b.len(), "summed slices of one length");
    let (a, b) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: T = a
        .remainder()
        .iter()
        .zip(b.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    let mut lanes = [T::default(); L];
    for (a, b) in a.zip(b) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(a).zip(b) {
            *lane += f(x, y);
        }
    }
    let mut total: T = lanes.into_iter().sum();
    total += tail;
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-lane sum is a sum: odd lengths (a tail), short ones (only a tail), none.
    #[test]
    fn lane_sum_adds_every_term_once() {
        for n in [0usize, 1, 15, 16, 17, 100, 384] {
            let a: Vec<f32> = (1..=n).map(|j| j as f32).collect();
            let expected = (n * (n + 1) / 2) as f32;
            assert_eq!(
                run(|| lane_sum::<f32, 16>(&a, &a, |x, _| x)),
                expected,
                "n = {n}"
            );
            let squares = (n * (n + 1) * (2 * n + 1) / 6) as f32;
            assert_eq!(
                run(|| lane_sum::<f32, 16>(&a, &a, |x, y| x * y)),
                squares,
                "n = {n}"
            );
        }
    }
}
