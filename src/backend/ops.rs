//! The model's hot ops, each computed by burnbert's own flex op (`host_ops`: one pass on every
//! core, hand-written backward) where every operand is an f32 tensor on the flex device, by
//! torch's own kernels while training on tch (`torch_ops`: LayerNorm, GELU, attention), and by
//! Burn's own op everywhere else (GPUs through wgpu, ndarray, f16/bf16 on flex). Same results
//! either way, to f32 rounding (the unit tests compare values and gradients).

use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::activation::{gelu as burn_gelu, softmax as burn_softmax};
use burn::tensor::{Int, Tensor};

#[cfg(feature = "flex")]
use super::host_ops::HostOps;
#[cfg(feature = "tch")]
use super::torch_ops::TorchOps;

/// Whether every tensor can take burnbert's own tch ops: under autodiff on a tch device.
#[cfg(feature = "tch")]
fn on_torch<const D: usize>(tensors: &[&Tensor<D>]) -> bool {
    tensors.iter().all(|t| t.is_autodiff() && super::on_tch(t))
}

/// Whether every tensor can take burnbert's own ops: f32 on the flex device.
#[cfg(feature = "flex")]
fn on_host<const D: usize>(tensors: &[&Tensor<D>]) -> bool {
    tensors
        .iter()
        .all(|t| t.dtype() == burn::tensor::DType::F32 && super::cheap_host_access(&t.device()))
}

#[cfg(any(feature = "flex", feature = "tch"))]
fn call<const D: usize>(
    op: impl FnOnce() -> burn::backend::tensor::FloatTensor<burn::backend::Dispatch>,
) -> Tensor<D> {
    Tensor::from_dispatch(op())
}

/// `layer(x)`: `x` `[.., d_in]` -> `[.., d_out]`.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    {
        let weight = layer.weight.val();
        let [d_in, d_out] = weight.dims();
        if on_host(&[&x]) && on_host(&[&weight]) {
            let mut dims = x.dims();
            let x = x.reshape([dims.iter().product::<usize>() / d_in, d_in]);
            dims[D - 1] = d_out;
            let out: Tensor<2> = match &layer.bias {
                Some(bias) => call(|| {
                    burn::backend::Dispatch::host_linear(
                        x.into_dispatch(),
                        weight.into_dispatch(),
                        bias.val().into_dispatch(),
                    )
                }),
                None => call(|| {
                    burn::backend::Dispatch::host_matmul(x.into_dispatch(), weight.into_dispatch())
                }),
            };
            return out.reshape(dims);
        }
    }
    layer.forward(x)
}

/// `a·b` per batch: `[.., m, k]` · `[.., k, n]` -> `[.., m, n]`.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if on_host(&[&a, &b]) && a.dims()[..D - 2] == b.dims()[..D - 2] {
        return call(|| burn::backend::Dispatch::host_matmul(a.into_dispatch(), b.into_dispatch()));
    }
    a.matmul(b)
}

/// Softmax over the last dim; any shape.
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if on_host(&[&x]) {
        return call(|| burn::backend::Dispatch::host_softmax(x.into_dispatch()));
    }
    burn_softmax(x, D - 1)
}

/// `layer(x)` with the layer's own epsilon `epsilon` (Burn keeps it private); any shape
/// `[.., d]`. A layer without a bias (ModernBERT's `norm_bias = false`) takes a constant zero
/// one on the host.
pub fn layer_norm<const D: usize>(layer: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    #[cfg(any(feature = "flex", feature = "tch"))]
    let params = || {
        let gamma = layer.gamma.val();
        let beta = match &layer.beta {
            Some(beta) => beta.val(),
            None => gamma.zeros_like(),
        };
        (gamma.into_dispatch(), beta.into_dispatch())
    };
    #[cfg(feature = "flex")]
    if on_host(&[&x]) {
        let (gamma, beta) = params();
        return call(|| {
            burn::backend::Dispatch::host_layer_norm(x.into_dispatch(), gamma, beta, epsilon)
        });
    }
    #[cfg(feature = "tch")]
    if on_torch(&[&x]) {
        let (gamma, beta) = params();
        return call(|| {
            burn::backend::Dispatch::torch_layer_norm(x.into_dispatch(), gamma, beta, epsilon)
        });
    }
    let _ = epsilon;
    layer.forward(x)
}

/// Exact GELU (`x·Φ(x)`); any shape.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if on_host(&[&x]) {
        return call(|| burn::backend::Dispatch::host_gelu(x.into_dispatch()));
    }
    #[cfg(feature = "tch")]
    if on_torch(&[&x]) {
        return call(|| burn::backend::Dispatch::torch_gelu(x.into_dispatch()));
    }
    burn_gelu(x)
}

/// Whether [`trained_attention`] takes torch's fused attention for `q` (training on tch).
pub fn trains_fused_attention(q: &Tensor<4>) -> bool {
    #[cfg(feature = "tch")]
    if on_torch(&[q]) {
        return true;
    }
    let _ = q;
    false
}

/// `dropout(softmax(q·kᵀ/√head_dim, hidden keys masked))·v` as one op while training, where
/// [`trains_fused_attention`] says so: `q` `[batch, heads, queries, head_dim]`, `k`, `v`
/// `[batch, heads, seq, head_dim]`, `hidden` broadcastable to `[batch, heads, queries, seq]`,
/// `true` where a key is hidden from a query (never every key of a query); `dropout` the
/// probability an attention weight is dropped.
pub fn trained_attention(
    [q, k, v]: [Tensor<4>; 3],
    hidden: Tensor<4, burn::tensor::Bool>,
    dropout: f64,
) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if on_torch(&[&q]) {
        // torch's boolean mask keeps where it is `true`.
        let keep = hidden.bool_not();
        return call(|| {
            burn::backend::Dispatch::torch_attention(
                q.into_dispatch(),
                k.into_dispatch(),
                v.into_dispatch(),
                keep.into_dispatch(),
                dropout,
            )
        });
    }
    let _ = (k, v, hidden, dropout);
    unreachable!("trained_attention without trains_fused_attention: {q:?}")
}

/// `a·b` element by element; `a` and `b` of one shape.
pub fn mul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if on_host(&[&a, &b]) && a.dims() == b.dims() {
        return call(|| burn::backend::Dispatch::host_mul(a.into_dispatch(), b.into_dispatch()));
    }
    a * b
}

/// The rows of the layer's table that `ids` `[batch, seq]` name: `[batch, seq, d]`.
pub fn embedding(layer: &Embedding, ids: Tensor<2, Int>) -> Tensor<3> {
    #[cfg(feature = "flex")]
    {
        let weights = layer.weight.val();
        let ids_fit = matches!(
            ids.dtype(),
            burn::tensor::DType::I64 | burn::tensor::DType::I32
        );
        if on_host(&[&weights]) && ids_fit {
            return call(|| {
                burn::backend::Dispatch::host_embedding(
                    weights.into_dispatch(),
                    ids.into_dispatch(),
                )
            });
        }
    }
    layer.forward(ids)
}

/// Whether [`linear`], [`matmul`] and the rest take burnbert's own op for `x` (tests assert it).
#[cfg(all(test, any(feature = "flex", feature = "tch")))]
pub(crate) fn takes_host_op<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    if on_host(&[x]) {
        return true;
    }
    #[cfg(feature = "tch")]
    if on_torch(&[x]) {
        return true;
    }
    false
}

/// Each op against Burn's own, on flex (the device the routing sends to `host_ops`) and, for
/// LayerNorm, GELU and attention, on tch while training (`torch_ops`): values, and the gradient
/// of a weighted sum of the output with respect to every input.
#[cfg(all(test, any(feature = "flex", feature = "tch")))]
mod tests {
    use burn::module::Param;
    use burn::nn::{LayerNormConfig, LinearConfig};
    use burn::tensor::{Device, TensorData};

    use super::*;

    /// Values spread over about ±`scale`, the same for the same `seed`.
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let z = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ^ seed.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let z = (z ^ (z >> 29)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    fn input<const D: usize>(dims: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
        let n = dims.iter().product();
        let x = Tensor::from_data(TensorData::new(values(n, seed, 2.0), dims), device);
        if device.is_autodiff() {
            x.require_grad()
        } else {
            x
        }
    }

    fn close<const D: usize>(ours: Tensor<D>, theirs: Tensor<D>, what: &str) {
        assert_eq!(ours.dims(), theirs.dims(), "{what}: shape");
        let scale = theirs.clone().abs().max().into_scalar::<f32>().max(1.0);
        let diff = (ours - theirs).abs().max().into_scalar::<f32>();
        assert!(
            diff <= 2e-6 * scale,
            "{what} differs by {diff} (largest value {scale})"
        );
    }

    /// `ours` and `theirs` on `inputs`: equal values, equal gradients for every input.
    fn same_op<const D: usize, const E: usize>(
        inputs: &[Tensor<D>],
        ours: impl Fn(&[Tensor<D>]) -> Tensor<E>,
        theirs: impl Fn(&[Tensor<D>]) -> Tensor<E>,
    ) {
        for x in inputs {
            assert!(takes_host_op(x), "the host op must be the one tested");
        }
        let (y_ours, y_theirs) = (ours(inputs), theirs(inputs));
        close(y_ours.clone(), y_theirs.clone(), "value");
        // Weights make each gradient depend on which element it flows to.
        let weights = input(y_ours.dims(), 99, &y_ours.device()).detach();
        let g_ours = (y_ours * weights.clone()).sum().backward();
        let g_theirs = (y_theirs * weights).sum().backward();
        for (i, x) in inputs.iter().enumerate() {
            let (a, b) = (x.grad(&g_ours), x.grad(&g_theirs));
            close(
                a.expect("our gradient"),
                b.expect("Burn's gradient"),
                &format!("gradient {i}"),
            );
        }
    }

    #[cfg(feature = "flex")]
    fn device() -> Device {
        Device::flex().autodiff()
    }

    /// The training devices with burnbert's own LayerNorm and GELU.
    fn devices() -> Vec<Device> {
        let mut devices = Vec::new();
        #[cfg(feature = "flex")]
        devices.push(Device::flex().autodiff());
        #[cfg(feature = "tch")]
        devices.push(Device::libtorch().autodiff());
        devices
    }

    #[cfg(feature = "flex")]
    #[test]
    fn linear_equals_burns_with_and_without_bias() {
        let device = device();
        for bias in [true, false] {
            let mut layer = LinearConfig::new(7, 6).with_bias(bias).init(&device);
            let w = input([7, 6], 2, &device);
            layer.weight = Param::from_tensor(w.clone());
            let b = input([6], 3, &device);
            if bias {
                layer.bias = Some(Param::from_tensor(b.clone()));
            }
            let x = input([2, 5, 7], 1, &device);
            // The weight and bias are checked through their own gradients below.
            same_op(
                &[x.clone()],
                |t| linear(&layer, t[0].clone()),
                |t| layer.forward(t[0].clone()),
            );
            let g_ours = (linear(&layer, x.clone()) * 0.5).sum().backward();
            let g_theirs = (layer.forward(x.clone()) * 0.5).sum().backward();
            close(
                w.grad(&g_ours).unwrap(),
                w.grad(&g_theirs).unwrap(),
                "weight gradient",
            );
            if bias {
                close(
                    b.grad(&g_ours).unwrap(),
                    b.grad(&g_theirs).unwrap(),
                    "bias gradient",
                );
            }
            // Inference: values alone.
            let plain = LinearConfig::new(7, 6)
                .with_bias(bias)
                .init(&Device::flex());
            let x = input([3, 7], 4, &Device::flex());
            close(
                linear(&plain, x.clone()),
                plain.forward(x),
                "inference value",
            );
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn batched_matmul_equals_burns_through_a_transposed_view() {
        let device = device();
        let (q, k) = (
            input([2, 3, 5, 4], 5, &device),
            input([2, 3, 6, 4], 6, &device),
        );
        // q·kᵀ with kᵀ a strided view, as attention's scores.
        same_op(
            &[q, k],
            |t| matmul(t[0].clone(), t[1].clone().swap_dims(2, 3)),
            |t| t[0].clone().matmul(t[1].clone().swap_dims(2, 3)),
        );
        let (p, v) = (
            input([2, 3, 5, 6], 7, &device),
            input([2, 3, 6, 4], 8, &device),
        );
        same_op(
            &[p, v],
            |t| matmul(t[0].clone(), t[1].clone()),
            |t| t[0].clone().matmul(t[1].clone()),
        );
    }

    #[cfg(feature = "flex")]
    #[test]
    fn softmax_equals_burns() {
        let device = device();
        let x = input([2, 3, 5, 9], 9, &device);
        same_op(
            &[x],
            |t| softmax(t[0].clone()),
            |t| burn_softmax(t[0].clone(), 3),
        );
    }

    /// With a bias at two epsilons, and without one (ModernBERT's norms, through the host op's
    /// constant zero bias).
    #[test]
    fn layer_norm_equals_burns() {
        for device in devices() {
            layer_norm_equals_burns_on(&device);
        }
    }

    fn layer_norm_equals_burns_on(device: &Device) {
        let device = device.clone();
        for (epsilon, bias) in [(1e-12, true), (1e-5, true), (1e-5, false)] {
            // 40 columns: two full 16-lane blocks of the row sums and a tail.
            let mut layer = LayerNormConfig::new(40)
                .with_epsilon(epsilon)
                .with_bias(bias)
                .init(&device);
            let (gamma, beta) = (input([40], 11, &device), input([40], 12, &device));
            layer.gamma = Param::from_tensor(gamma.clone());
            layer.beta = bias.then(|| Param::from_tensor(beta.clone()));
            let x = input([3, 4, 40], 10, &device);
            same_op(
                &[x.clone()],
                |t| layer_norm(&layer, epsilon, t[0].clone()),
                |t| layer.forward(t[0].clone()),
            );
            let g_ours = (layer_norm(&layer, epsilon, x.clone()) * x.clone().detach())
                .sum()
                .backward();
            let g_theirs = (layer.forward(x.clone()) * x.detach()).sum().backward();
            let mut params = vec![(gamma, "gamma gradient")];
            if bias {
                params.push((beta, "beta gradient"));
            }
            for (param, what) in params {
                close(
                    param.grad(&g_ours).unwrap(),
                    param.grad(&g_theirs).unwrap(),
                    what,
                );
            }
        }
    }

    #[test]
    fn gelu_equals_burns_in_value_and_gradient() {
        let grid: Vec<f32> = (0..40_000)
            .map(|i| (i as f32 - 20_000.0) / 2_000.0)
            .collect();
        for device in devices() {
            let x = Tensor::<2>::from_data(TensorData::new(grid.clone(), [200, 200]), &device)
                .require_grad();
            same_op(&[x], |t| gelu(t[0].clone()), |t| burn_gelu(t[0].clone()));
            let plain = Tensor::<2>::from_data(
                TensorData::new(grid.clone(), [200, 200]),
                &device.without_autodiff(),
            );
            close(gelu(plain.clone()), burn_gelu(plain), "inference value");
        }
    }

    /// Training attention on tch (torch's SDPA) without dropout against the unfused ops, on a
    /// batch whose second row hides its last three keys; with dropout, a share of the weights
    /// near the probability is dropped (the rows of `v` are one-hot, so each output element is
    /// one weight, scaled up by `1 / (1 - p)` where kept).
    #[cfg(feature = "tch")]
    #[test]
    fn trained_attention_equals_the_unfused_ops_on_tch() {
        use burn::tensor::Bool;
        let device = Device::libtorch().autodiff();
        let hidden = Tensor::<4, Bool>::from_data(
            TensorData::new(
                [[false; 7], [false, false, false, false, true, true, true]].concat(),
                [2, 1, 1, 7],
            ),
            &device,
        );
        let q = input([2, 3, 5, 4], 21, &device);
        let k = input([2, 3, 7, 4], 22, &device);
        let v = input([2, 3, 7, 4], 23, &device);
        assert!(trains_fused_attention(&q));
        let unfused = |t: &[Tensor<4>]| {
            let scores = t[0].clone().matmul(t[1].clone().swap_dims(2, 3)) / 2.0;
            let scores = scores.mask_fill(hidden.clone(), -1e30);
            burn_softmax(scores, 3).matmul(t[2].clone())
        };
        for x in [&q, &k] {
            assert!(takes_host_op(x));
        }
        let (y_ours, y_theirs) = (
            trained_attention([q.clone(), k.clone(), v.clone()], hidden.clone(), 0.0),
            unfused(&[q.clone(), k.clone(), v.clone()]),
        );
        close(y_ours.clone(), y_theirs.clone(), "value");
        let weights = input(y_ours.dims(), 99, &device).detach();
        let g_ours = (y_ours * weights.clone()).sum().backward();
        let g_theirs = (y_theirs * weights).sum().backward();
        for (i, x) in [&q, &k, &v].into_iter().enumerate() {
            close(
                x.grad(&g_ours).unwrap(),
                x.grad(&g_theirs).unwrap(),
                &format!("gradient {i}"),
            );
        }
        // Dropout: 64 keys of equal score, one-hot values, so every output is 1/64 kept or 0.
        let (q, k) = (
            Tensor::<4>::zeros([1, 4, 8, 2], &device),
            Tensor::<4>::zeros([1, 4, 64, 2], &device),
        );
        let v = Tensor::<2>::eye(64, &device)
            .reshape([1, 1, 64, 64])
            .expand([1, 4, 64, 64]);
        let none =
            Tensor::<4, Bool>::from_data(TensorData::new(vec![false; 64], [1, 1, 1, 64]), &device);
        let out = trained_attention([q, k, v], none, 0.25)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let dropped = out.iter().filter(|&&w| w == 0.0).count() as f64 / out.len() as f64;
        let kept = out.iter().filter(|&&w| w != 0.0);
        assert!(
            (0.2..0.3).contains(&dropped),
            "{dropped} of the weights dropped"
        );
        for &w in kept {
            assert!((w - 1.0 / 64.0 / 0.75).abs() < 1e-6, "a kept weight {w}");
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn mul_equals_burns_with_a_constant_and_with_two_tracked_operands() {
        let device = device();
        let (a, b) = (input([4, 33], 13, &device), input([4, 33], 14, &device));
        same_op(
            &[a.clone(), b],
            |t| mul(t[0].clone(), t[1].clone()),
            |t| t[0].clone() * t[1].clone(),
        );
        let mask = input([4, 33], 15, &device).detach();
        same_op(
            &[a],
            |t| mul(t[0].clone(), mask.clone()),
            |t| t[0].clone() * mask.clone(),
        );
    }

    /// Repeated ids sum their gradients; rows no id names get zero.
    #[cfg(feature = "flex")]
    #[test]
    fn embedding_equals_burns() {
        let device = device();
        let mut layer = burn::nn::EmbeddingConfig::new(10, 6).init(&device);
        let table = input([10, 6], 16, &device);
        layer.weight = Param::from_tensor(table.clone());
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![3i64, 1, 3, 9, 0, 3], [2, 3]),
            &device,
        );
        let weights = input([2, 3, 6], 17, &device).detach();
        assert!(takes_host_op(&table));
        let (ours, theirs) = (embedding(&layer, ids.clone()), layer.forward(ids));
        close(ours.clone(), theirs.clone(), "value");
        let g_ours = (ours * weights.clone()).sum().backward();
        let g_theirs = (theirs * weights).sum().backward();
        close(
            table.grad(&g_ours).unwrap(),
            table.grad(&g_theirs).unwrap(),
            "table gradient",
        );
    }
}
