//! burnbert's own training ops on the tch backend, as a Burn backend extension for
//! `Autodiff<LibTorch>`. Under autodiff, Burn composes LayerNorm, GELU and attention from
//! element-wise ops, each its own libtorch call (on a GPU, its own kernel launch) forward and
//! backward; these run torch's own kernels instead: GELU with its backward kernel, LayerNorm and
//! attention (torch's SDPA, its dropout included) through torch's autograd, whose graph of the
//! one op is kept for Burn's backward pass. Float tensors of any type; `ops` decides.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{Autodiff, Backend, LibTorch, backend_extension};
use burn_tch::TchTensor;

/// The ops. Shapes as in [`super::ops`].
#[backend_extension(LibTorch, Autodiff)]
pub trait TorchOps: Backend {
    /// LayerNorm over the last dim `d`: `x` any shape, `gamma` and `beta` `[d]`.
    fn torch_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
    /// Exact GELU; any shape.
    fn torch_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `dropout(softmax(q·kᵀ/√head_dim, hidden keys masked))·v`: `q` `[batch, heads, queries,
    /// head_dim]`, `k`, `v` `[batch, heads, seq, head_dim]`, `keep` broadcastable to `[batch,
    /// heads, queries, seq]`, `true` where a query sees a key; every query sees at least one.
    fn torch_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        keep: BoolTensor<Self>,
        dropout: f64,
    ) -> FloatTensor<Self>;
}

fn layer_norm(x: &tch::Tensor, gamma: &tch::Tensor, beta: &tch::Tensor, eps: f64) -> tch::Tensor {
    let d = *x.size().last().expect("a tensor of rank ≥ 1");
    x.layer_norm([d], Some(gamma), Some(beta), eps, true)
}

fn attention([q, k, v]: [&tch::Tensor; 3], keep: &tch::Tensor, dropout: f64) -> tch::Tensor {
    tch::Tensor::scaled_dot_product_attention(q, k, v, Some(keep), dropout, false, None, false)
}

impl TorchOps for LibTorch {
    fn torch_layer_norm(
        x: TchTensor,
        gamma: TchTensor,
        beta: TchTensor,
        epsilon: f64,
    ) -> TchTensor {
        TchTensor::new(layer_norm(&x.tensor, &gamma.tensor, &beta.tensor, epsilon))
    }

    fn torch_gelu(x: TchTensor) -> TchTensor {
        TchTensor::new(x.tensor.gelu("none"))
    }

    fn torch_attention(
        q: TchTensor,
        k: TchTensor,
        v: TchTensor,
        keep: TchTensor,
        dropout: f64,
    ) -> TchTensor {
        TchTensor::new(attention(
            [&q.tensor, &k.tensor, &v.tensor],
            &keep.tensor,
            dropout,
        ))
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<LibTorch, 1> for GeluBackward {
    /// The input.
    type State = TchTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<LibTorch, _>(ops.parents, ops.node, grads, |grad| {
            TchTensor::new(x.tensor.gelu_backward(&grad.tensor, "none"))
        });
    }
}

/// One op recorded by torch's autograd: its output (with torch's graph behind it) and the
/// leaves that stand for its `N` inputs, `None` for inputs Burn tracks no gradient of.
#[derive(Debug, Clone)]
struct TorchGraph<const N: usize> {
    out: TchTensor,
    leaves: [Option<TchTensor>; N],
}

impl<const N: usize> TorchGraph<N> {
    /// Runs `op` on `inputs` under torch's autograd, with leaves for the `tracked` inputs: the
    /// graph, and the output detached from it for Burn.
    fn record(
        inputs: [&TchTensor; N],
        tracked: [bool; N],
        op: impl FnOnce([&tch::Tensor; N]) -> tch::Tensor,
    ) -> (Self, TchTensor) {
        tch::with_grad(|| {
            let leaves: [tch::Tensor; N] = std::array::from_fn(|i| {
                let leaf = inputs[i].tensor.detach();
                if tracked[i] {
                    leaf.set_requires_grad(true)
                } else {
                    leaf
                }
            });
            let out = op(std::array::from_fn(|i| &leaves[i]));
            let detached = TchTensor::new(out.detach());
            let mut leaves = leaves.into_iter().zip(tracked);
            let leaves = std::array::from_fn(|_| {
                let (leaf, tracked) = leaves.next().expect("N leaves");
                tracked.then(|| TchTensor::new(leaf))
            });
            let graph = Self {
                out: TchTensor::new(out),
                leaves,
            };
            (graph, detached)
        })
    }

    /// The gradients of the tracked leaves for the output's gradient `grad`.
    fn gradients(self, grad: &tch::Tensor) -> [Option<TchTensor>; N] {
        let wanted: Vec<&tch::Tensor> = self.leaves.iter().flatten().map(|l| &l.tensor).collect();
        let loss = tch::with_grad(|| (&self.out.tensor * grad).sum(None));
        let mut found = tch::Tensor::run_backward(&[loss], &wanted, false, false).into_iter();
        self.leaves
            .map(|leaf| leaf.map(|_| TchTensor::new(found.next().expect("one per leaf"))))
    }
}

/// The backward pass of an op recorded by [`TorchGraph`].
#[derive(Debug)]
struct GraphBackward;

impl<const N: usize> Backward<LibTorch, N> for GraphBackward {
    type State = TorchGraph<N>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        for (node, found) in ops
            .parents
            .into_iter()
            .zip(ops.state.gradients(&grad.tensor))
        {
            if let (Some(node), Some(found)) = (node, found) {
                grads.register::<LibTorch>(node.id, found);
            }
        }
    }
}

/// `op` on three tensors: under torch's autograd, its graph kept for Burn's backward pass, where
/// Burn tracks any of them; plainly otherwise.
fn through_torch<C: CheckpointStrategy>(
    inputs: [FloatTensor<Autodiff<LibTorch, C>>; 3],
    op: impl FnOnce([&tch::Tensor; 3]) -> tch::Tensor,
) -> FloatTensor<Autodiff<LibTorch, C>> {
    let tracked = inputs.each_ref().map(|t| t.is_tracked());
    let prep = GraphBackward
        .prepare::<C>(inputs.each_ref().map(|t| t.node()))
        .compute_bound()
        .stateful();
    let inputs = inputs.map(|t| t.into_primitive());
    match prep {
        OpsKind::Tracked(prep) => {
            let (graph, out) = TorchGraph::record(inputs.each_ref(), tracked, op);
            prep.finish(graph, out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(TchTensor::new(op(inputs.each_ref().map(|t| &t.tensor))))
        }
    }
}

impl<C: CheckpointStrategy> TorchOps for Autodiff<LibTorch, C> {
    fn torch_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        through_torch::<C>([x, gamma, beta], |[x, gamma, beta]| {
            layer_norm(x, gamma, beta, epsilon)
        })
    }

    fn torch_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        let out = TchTensor::new(x.tensor.gelu("none"));
        match prep {
            OpsKind::Tracked(prep) => prep.finish(x, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn torch_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        keep: BoolTensor<Self>,
        dropout: f64,
    ) -> FloatTensor<Self> {
        through_torch::<C>([q, k, v], |qkv| attention(qkv, &keep.tensor, dropout))
    }
}

/// A tensor of a step's own to write: `t` itself where nothing else holds its memory (Burn's
/// count of the storage's owners), else a copy.
fn own(t: TchTensor) -> tch::Tensor {
    if t.can_mut() {
        t.tensor
    } else {
        t.tensor.g_mul_scalar(1.0)
    }
}

/// One AdamW step on tch tensors in place, PyTorch's AdamW update (its single-tensor ops, with
/// √(1−β₂ᵗ) moved out of the denominator): the new parameter written over the gradient, the
/// moments updated in place ([`update`]). `moments` `None` on the first step. Returns
/// `[param, m, v]`.
pub(super) fn adamw(
    step: &super::AdamWStep,
    param: &TchTensor,
    grad: TchTensor,
    moments: Option<[TchTensor; 2]>,
) -> [TchTensor; 3] {
    tch::no_grad(|| {
        let mut g = own(grad);
        if step.factor != 1.0 {
            let _ = g.g_mul_scalar_(step.factor as f64);
        }
        let [m, v] = match moments {
            Some(moments) => moments.map(own),
            None => [g.zeros_like(), g.zeros_like()],
        };
        update(step, &mut g, [&m, &m], [&v, &v], &param.tensor);
        [g, m, v].map(TchTensor::new)
    })
}

/// The AdamW update of one step, nine ops: with `g` the gradient (already times its factor),
/// `m ← lerp(m_old, g, 1−β₁)`, `v ← lerp(v_old, g², 1−β₂)`, and the new parameter written
/// over `g`: `param·(1 − lr·λ) − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε)`. `[m_old, m]` and
/// `[v_old, v]` are where each moment is read and written (the same tensor to update in place);
/// every tensor has `g`'s shape.
pub(super) fn update(
    step: &super::AdamWStep,
    g: &mut tch::Tensor,
    [m_old, m]: [&tch::Tensor; 2],
    [v_old, v]: [&tch::Tensor; 2],
    param: &tch::Tensor,
) {
    let super::AdamWStep {
        lr,
        beta_1,
        beta_2,
        epsilon,
        weight_decay,
        time,
        ..
    } = *step;
    let _ = m_old.lerp_scalar_out(m, g, 1.0 - beta_1 as f64);
    let g_again = g.shallow_clone();
    let _ = g.g_mul_(&g_again);
    let _ = v_old.lerp_scalar_out(v, g, 1.0 - beta_2 as f64);
    let time = time as i32;
    let correction_1 = 1.0 - (beta_1 as f64).powi(time);
    let correction_2 = 1.0 - (beta_2 as f64).powi(time);
    // g ← m / (√v / √(1−β₂ᵗ) + ε) · (−lr / (1−β₁ᵗ)) + param · (1 − lr·λ), with
    // √(1−β₂ᵗ) moved out of the denominator: m / (√v + ε√(1−β₂ᵗ)) · (−lr√(1−β₂ᵗ) / (1−β₁ᵗ)).
    let root_2 = correction_2.sqrt();
    let _ = v.sqrt_out(g);
    let _ = g.g_add_scalar_(epsilon as f64 * root_2);
    let _ = m.div_out(g, &g_again);
    let _ = g.g_mul_scalar_(-lr * root_2 / correction_1);
    let keep = 1.0 - lr * weight_decay as f64;
    if keep == 1.0 {
        let _ = g.g_add_(param);
    } else {
        let _ = g.g_add_(&param.g_mul_scalar(keep));
    }
}

/// Whether `t` lives on a GPU, where each op is a kernel launch and a small model's training
/// step is bound by launches: there fewer, larger ops pay even at the price of a copy.
pub(super) fn on_gpu(t: &tch::Tensor) -> bool {
    t.device() != tch::Device::Cpu
}

/// The L2 norm of all `grads` (rank 1) together, as `[1]`: with `gathered`, the norm of them
/// all concatenated (two ops, a copy of every gradient: on a GPU); else `‖(‖g₁‖₂, ‖g₂‖₂, …)‖₂`,
/// one norm per gradient, as torch's `clip_grad_norm_` computes it (no copy: on a CPU).
pub(super) fn global_norm(grads: &[TchTensor], gathered: bool) -> TchTensor {
    tch::no_grad(|| {
        let norm = if gathered {
            let flat: Vec<&tch::Tensor> = grads.iter().map(|g| &g.tensor).collect();
            tch::Tensor::cat(&flat, 0).norm()
        } else {
            let norms: Vec<tch::Tensor> = grads.iter().map(|g| g.tensor.norm()).collect();
            tch::Tensor::stack(&norms, 0).norm()
        };
        TchTensor::new(norm.reshape([1]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The norm of the gradients concatenated equals the norm of their norms, and both the
    /// square root of the sum of all squares.
    #[test]
    fn the_gathered_norm_equals_the_norm_of_norms() {
        let grads: Vec<TchTensor> = [300 * 257, 257, 60]
            .into_iter()
            .map(|n| TchTensor::new(tch::Tensor::randn([n], tch::kind::FLOAT_CPU)))
            .collect();
        let [gathered, each] =
            [true, false].map(|g| global_norm(&grads, g).tensor.double_value(&[0]));
        let squares: f64 = grads
            .iter()
            .map(|g| g.tensor.square().sum(None).double_value(&[]))
            .sum();
        let root = squares.sqrt();
        assert!((each - root).abs() < 1e-5 * root, "{each} vs {root}");
        assert!(
            (gathered - root).abs() < 1e-5 * root,
            "{gathered} vs {root}"
        );
    }
}
