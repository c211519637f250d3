//! burnbert's own ops on the flex CPU backend, as a Burn backend extension with hand-written
//! backward passes for `Autodiff<Flex>`. Under autodiff, Burn composes softmax and LayerNorm
//! from element-wise ops and adds a linear layer's bias after its product, and flex runs
//! element-wise ops on one thread and zero-fills, then copies, every product's output; these
//! ops do each of those in one pass on every core (`kernels`). Only for f32 tensors on flex:
//! `ops` decides, and every other device keeps Burn's ops.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::{DType, Shape, TensorData};
use burn_flex::FlexTensor;

use super::kernels::{self, Mat};

/// The ops; every tensor is f32. Shapes as in [`super::ops`].
#[backend_extension(Flex, Autodiff)]
pub trait HostOps: Backend {
    /// `x·w + b`: `x` `[rows, d_in]`, `w` `[d_in, d_out]`, `b` `[d_out]` -> `[rows, d_out]`.
    fn host_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `a·b` per batch: `[.., m, k]` · `[.., k, n]` -> `[.., m, n]`, the same batch dims.
    fn host_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax over the last dim; any shape.
    fn host_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// LayerNorm over the last dim `d`: `x` any shape, `gamma` and `beta` `[d]`.
    fn host_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
    /// Exact GELU; any shape.
    fn host_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `a·b` element by element; one shape.
    fn host_mul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The rows of `weights` `[rows, d]` that `ids` `[batch, seq]` name: `[batch, seq, d]`.
    fn host_embedding(weights: FloatTensor<Self>, ids: IntTensor<Self>) -> FloatTensor<Self>;
}

/// `t` with its values in one dense run (a copy only if it is a strided view).
fn dense(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("host ops keep their tensors dense and f32")
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn shape(t: &FlexTensor) -> Shape {
    t.layout().shape().clone()
}

/// `shape` with its last dim replaced by `last`.
fn with_last(shape: &Shape, last: usize) -> Shape {
    let mut dims = shape.to_vec();
    *dims.last_mut().expect("a tensor of rank ≥ 1") = last;
    Shape::from(dims)
}

/// The matrices of a `[.., rows, cols]` tensor (any strides): the first one's view and every
/// matrix's offset from it, in row-major batch order.
fn matrices(t: &FlexTensor) -> (Mat, Vec<isize>) {
    let layout = t.layout();
    let (dims, strides) = (layout.shape().to_vec(), layout.strides());
    let rank = dims.len();
    let storage = t.storage::<f32>();
    let mat = Mat {
        // SAFETY: the layout's start offset lies inside its storage.
        ptr: unsafe { storage.as_ptr().add(layout.start_offset()) },
        rows: dims[rank - 2],
        cols: dims[rank - 1],
        rs: strides[rank - 2],
        cs: strides[rank - 1],
    };
    let mut offsets = vec![0isize];
    for d in 0..rank - 2 {
        offsets = offsets
            .iter()
            .flat_map(|&o| (0..dims[d]).map(move |i| o + i as isize * strides[d]))
            .collect();
    }
    (mat, offsets)
}

/// The 2-D view of a `[rows, cols]` tensor.
fn matrix(t: &FlexTensor) -> Mat {
    matrices(t).0
}

fn linear(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let w = matrix(weight);
    let x_mat = Mat::rows(values(x), shape(x)[0], w.rows);
    let out = kernels::product_plus_bias(x_mat, w, values(bias));
    tensor(out, Shape::from(vec![x_mat.rows, w.cols]))
}

/// `[.., m, n]` from batched `a·b`.
fn matmul(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (a_mat, a_offsets) = matrices(a);
    let (b_mat, b_offsets) = matrices(b);
    let out = kernels::batched_product(a_mat, &a_offsets, b_mat, &b_offsets);
    tensor(out, with_last(&shape(a), b_mat.cols))
}

/// `a·bᵀ` per batch (the first operand's gradient), `[.., m, k]`.
fn matmul_t_rhs(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (a_mat, a_offsets) = matrices(a);
    let (b_mat, b_offsets) = matrices(b);
    let out = kernels::batched_product(a_mat, &a_offsets, b_mat.t(), &b_offsets);
    tensor(out, with_last(&shape(a), b_mat.rows))
}

/// `aᵀ·b` per batch (the second operand's gradient), `[.., k, n]`.
fn matmul_t_lhs(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (a_mat, a_offsets) = matrices(a);
    let (b_mat, b_offsets) = matrices(b);
    let out = kernels::batched_product(a_mat.t(), &a_offsets, b_mat, &b_offsets);
    let mut dims = shape(a).to_vec();
    let rank = dims.len();
    (dims[rank - 2], dims[rank - 1]) = (a_mat.cols, b_mat.cols);
    tensor(out, Shape::from(dims))
}

fn gelu(x: &FlexTensor) -> FlexTensor {
    tensor(
        kernels::map(values(x), |v| kernels::gelu_and_slope(v).0),
        shape(x),
    )
}

fn mul(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    tensor(
        kernels::zip_map(values(a), values(b), |a, b| a * b),
        shape(a),
    )
}

impl HostOps for Flex {
    fn host_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear(&dense(x), &weight, &dense(bias))
    }

    fn host_matmul(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        matmul(&a, &b)
    }

    fn host_softmax(x: FlexTensor) -> FlexTensor {
        let last = x.layout().num_dims() - 1;
        <Flex as ActivationOps<Flex>>::softmax(x, last)
    }

    fn host_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        <Flex as ModuleOps<Flex>>::layer_norm(x, gamma, Some(beta), epsilon)
    }

    fn host_gelu(x: FlexTensor) -> FlexTensor {
        gelu(&dense(x))
    }

    fn host_mul(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        mul(&dense(a), &dense(b))
    }

    fn host_embedding(weights: FlexTensor, ids: FlexTensor) -> FlexTensor {
        <Flex as ModuleOps<Flex>>::embedding(weights, ids)
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// The input and the weight.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let (x, w) = ops.state;
        let cols = w.layout().shape()[1];
        let g = Mat::rows(values(&grad), values(&grad).len() / cols, cols);
        let for_x = (g, matrix(&w).t());
        let for_w = (Mat::rows(values(&x), g.rows, shape(&x)[1]).t(), g);
        let (dx, dw) = match (&node_x, &node_w) {
            (Some(_), Some(_)) => {
                let (dx, dw) = kernels::product_pair(for_x, for_w);
                (Some(dx), Some(dw))
            }
            _ => (
                node_x.as_ref().map(|_| kernels::product(for_x.0, for_x.1)),
                node_w.as_ref().map(|_| kernels::product(for_w.0, for_w.1)),
            ),
        };
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, tensor(dx, shape(&x)));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, tensor(dw, shape(&w)));
        }
        if let Some(node) = node_b {
            let db = kernels::column_sums(values(&grad), cols);
            grads.register::<Flex>(node.id, tensor(db, Shape::from(vec![cols])));
        }
    }
}

#[derive(Debug)]
struct MatmulBackward;

impl Backward<Flex, 2> for MatmulBackward {
    /// The two operands (either may be a strided view).
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let (a, b) = ops.state;
        if let Some(node) = node_a {
            grads.register::<Flex>(node.id, matmul_t_rhs(&grad, &b));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, matmul_t_lhs(&a, &grad));
        }
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    /// The output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let cols = *shape(&y).last().expect("rank ≥ 1");
            let dx = kernels::softmax_backward(values(&y), values(&dense(grad)), cols);
            tensor(dx, shape(&y))
        });
    }
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// The input, gamma and epsilon.
    type State = (FlexTensor, FlexTensor, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let (x, gamma, epsilon) = ops.state;
        let (dx, dgamma, dbeta) =
            kernels::layer_norm_backward(values(&x), values(&gamma), values(&grad), epsilon as f32);
        let d = Shape::from(vec![dgamma.len()]);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, shape(&x)));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(dgamma, d.clone()));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(dbeta, d));
        }
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let dx = kernels::zip_map(values(&x), values(&dense(grad)), |x, g| {
                g * kernels::gelu_and_slope(x).1
            });
            tensor(dx, shape(&x))
        });
    }
}

#[derive(Debug)]
struct MulBackward;

impl Backward<Flex, 2> for MulBackward {
    /// The operands each gradient needs: `b` for `a`'s, `a` for `b`'s.
    type State = (Option<FlexTensor>, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let (a, b) = ops.state;
        if let (Some(node), Some(b)) = (node_a, b) {
            grads.register::<Flex>(node.id, mul(&grad, &b));
        }
        if let (Some(node), Some(a)) = (node_b, a) {
            grads.register::<Flex>(node.id, mul(&grad, &a));
        }
    }
}

#[derive(Debug)]
struct EmbeddingBackward;

impl Backward<Flex, 1> for EmbeddingBackward {
    /// The ids and the table's shape.
    type State = (FlexTensor, Shape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (ids, table) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let ids = dense(ids);
            let ids: Vec<usize> = match ids.dtype() {
                DType::I64 => ids
                    .as_slice::<i64>()
                    .unwrap()
                    .iter()
                    .map(|&i| i as usize)
                    .collect(),
                DType::I32 => ids
                    .as_slice::<i32>()
                    .unwrap()
                    .iter()
                    .map(|&i| i as usize)
                    .collect(),
                other => {
                    unreachable!("`ops::embedding` routes only i64/i32 ids here, not {other:?}")
                }
            };
            let dw = kernels::embedding_backward(table[0], &ids, values(&dense(grad)), table[1]);
            tensor(dw, table)
        });
    }
}

impl<C: CheckpointStrategy> HostOps for Autodiff<Flex, C> {
    fn host_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prep = LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let (x, w, b) = (
            dense(x.into_primitive()),
            weight.into_primitive(),
            dense(bias.into_primitive()),
        );
        let out = linear(&x, &w, &b);
        match prep {
            OpsKind::Tracked(prep) => prep.finish((x, w), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn host_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = MatmulBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful();
        let (a, b) = (a.into_primitive(), b.into_primitive());
        let out = matmul(&a, &b);
        match prep {
            OpsKind::Tracked(prep) => prep.finish((a, b), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn host_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let out = <Flex as HostOps>::host_softmax(x.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => prep.finish(out.clone(), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn host_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let prep = LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma) = (dense(x.into_primitive()), dense(gamma.into_primitive()));
        let out = <Flex as HostOps>::host_layer_norm(
            x.clone(),
            gamma.clone(),
            beta.into_primitive(),
            epsilon,
        );
        match prep {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, epsilon), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn host_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = dense(x.into_primitive());
        let out = gelu(&x);
        match prep {
            OpsKind::Tracked(prep) => prep.finish(x, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn host_mul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let (a_tracked, b_tracked) = (a.is_tracked(), b.is_tracked());
        let prep = MulBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful();
        let (a, b) = (dense(a.into_primitive()), dense(b.into_primitive()));
        let out = mul(&a, &b);
        match prep {
            OpsKind::Tracked(prep) => {
                prep.finish((b_tracked.then_some(a), a_tracked.then_some(b)), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn host_embedding(weights: FloatTensor<Self>, ids: IntTensor<Self>) -> FloatTensor<Self> {
        let prep = EmbeddingBackward
            .prepare::<C>([weights.node()])
            .compute_bound()
            .stateful();
        let weights = weights.into_primitive();
        let table = shape(&weights);
        let out = <Flex as HostOps>::host_embedding(weights, ids.clone());
        match prep {
            OpsKind::Tracked(prep) => prep.finish((ids, table), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
