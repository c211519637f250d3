//! Dropout. On the flex CPU backend the masks are drawn here, on every core, from a
//! counter-based generator: Burn draws each element from a ChaCha generator on one thread and
//! then multiplies twice, which was about 10% of a training step's CPU samples (README,
//! Performance). Elsewhere (GPUs) Burn's own dropout runs on the device.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::nn::Dropout;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::backend::wide;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// The generator's state: advanced by one key per dropout call, reset by [`seed_dropout`].
static STATE: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);

/// Seeds the masks drawn on the host (as `Device::seed` seeds the device's generator): the
/// calls that follow draw the same masks after the same seed.
pub fn seed_dropout(seed: u64) {
    let state = mix(seed ^ 0x6a09_e667_f3bc_c908);
    STATE.store(state, Ordering::SeqCst);
}

/// SplitMix64's finalizer: a bijection of 64-bit words whose outputs for consecutive inputs
/// look independent.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Applies `layer` to `input` (any shape): while training, each element is zeroed with
/// probability `prob` and the others scaled by `1 / (1 - prob)`; otherwise `input` unchanged.
pub fn dropout<const D: usize>(layer: &Dropout, input: Tensor<D>) -> Tensor<D> {
    let device = input.device();
    if !layer.training.is_enabled() || !device.is_autodiff() || layer.prob == 0.0 {
        return input;
    }
    if !crate::backend::cheap_host_access(&device) {
        return layer.forward(input);
    }
    let keep = 1.0 - layer.prob;
    let shape = input.shape();
    let mask = mask(shape.num_elements(), keep, next_key());
    let dtype = input.dtype();
    let mask: Tensor<D> = Tensor::from_data(TensorData::new(mask, shape), &device);
    crate::backend::ops::mul(input, mask.cast(dtype))
}

/// The Weyl sequence's step (2^64 / φ).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The key of the next mask: from this thread's stream while [`with_stream`] runs on it, else
/// from the process-wide one.
pub fn next_key() -> u64 {
    if let Some(state) = STREAM.with(Cell::get) {
        let state = state.wrapping_add(GOLDEN);
        STREAM.with(|s| s.set(Some(state)));
        return mix(state);
    }
    mix(STATE
        .fetch_add(GOLDEN, Ordering::SeqCst)
        .wrapping_add(GOLDEN))
}

thread_local! {
    /// The stream of [`with_stream`] on this thread.
    static STREAM: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` with the masks this thread draws keyed from `key`'s own stream (the same masks
/// whichever thread runs it and whatever runs beside it), then restores the thread's stream.
pub fn with_stream<R>(key: u64, f: impl FnOnce() -> R) -> R {
    let before = STREAM.with(|s| s.replace(Some(key)));
    let out = f();
    STREAM.with(|s| s.set(before));
    out
}

/// `n` mask values drawn with `key`: `1 / keep` with probability `keep`, else 0.
fn mask(n: usize, keep: f64, key: u64) -> Vec<f32> {
    // Kept when the top 32 bits of an element's word fall below keep · 2^32.
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0.0f32; n];
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = (c * CHUNK) as u64;
            wide::run(
                #[inline(always)]
                || {
                    for (j, m) in chunk.iter_mut().enumerate() {
                        let word = mix(key.wrapping_add((base + j as u64).wrapping_mul(GOLDEN)));
                        *m = if word >> 32 < threshold { scale } else { 0.0 };
                    }
                },
            )
        });
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "flex")]
    use burn::nn::DropoutConfig;
    #[cfg(feature = "flex")]
    use burn::tensor::Device;

    /// Held by the tests that draw keys (the generator is global).
    static KEYS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The masks' statistics: kept fraction, and how often two neighbours are both kept.
    #[test]
    fn masks_keep_the_right_fraction_independently_and_are_seeded() {
        let _keys = KEYS.lock();
        seed_dropout(3);
        let (first, second) = (next_key(), next_key());
        seed_dropout(3);
        assert_eq!(next_key(), first);
        seed_dropout(4);
        assert_ne!(next_key(), first);
        let a = mask(1 << 20, 0.9, first);
        assert_eq!(mask(1 << 20, 0.9, first), a);
        assert_ne!(mask(1 << 20, 0.9, second), a);
        let kept = |m: &[f32]| m.iter().filter(|&&v| v > 0.0).count() as f64 / m.len() as f64;
        assert!((kept(&a) - 0.9).abs() < 0.002, "{}", kept(&a));
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        let pairs = a.windows(2).filter(|w| w[0] > 0.0 && w[1] > 0.0).count() as f64;
        assert!((pairs / (a.len() - 1) as f64 - 0.81).abs() < 0.003);
        assert!((kept(&mask(1 << 20, 0.5, second)) - 0.5).abs() < 0.002);
    }

    /// A stream gives the same keys on any thread, whatever the process-wide stream drew in
    /// between, and leaves the process-wide stream where it was.
    #[test]
    fn a_stream_draws_its_own_keys_on_any_thread_and_restores_the_shared_one() {
        let _keys = KEYS.lock();
        let here = with_stream(7, || [next_key(), next_key()]);
        assert_ne!(here[0], here[1]);
        next_key();
        let there = std::thread::spawn(|| with_stream(7, || [next_key(), next_key()]))
            .join()
            .unwrap();
        assert_eq!(here, there);
        seed_dropout(3);
        let shared = next_key();
        seed_dropout(3);
        assert_ne!(with_stream(8, next_key), shared);
        assert_eq!(next_key(), shared);
    }

    #[cfg(feature = "flex")]
    #[test]
    fn zeroes_and_scales_while_training_and_passes_gradients_through_the_mask() {
        let _keys = KEYS.lock();
        let layer = DropoutConfig::new(0.25).init();
        let eval = Tensor::<2>::ones([64, 64], &Device::flex());
        assert_eq!(dropout(&layer, eval.clone()).into_data(), eval.into_data());
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::ones([64, 64], &device).require_grad();
        let y = dropout(&layer, x.clone());
        let out: Vec<f32> = y.clone().into_data().try_to_vec::<f32>().unwrap();
        assert!(
            out.iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
        );
        let kept = out.iter().filter(|&&v| v > 0.0).count();
        assert!((2800..3350).contains(&kept), "{kept} of 4096 kept");
        let grads = y.sum().backward();
        let grad: Vec<f32> = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(grad, out);
    }
}
