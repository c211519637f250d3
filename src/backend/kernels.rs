//! The arithmetic of burnbert's own CPU ops (`host_ops`) over f32 buffers, on every core:
//! matrix products through the `gemm` crate into buffers that are written once (no zero fill,
//! no re-alignment copy), and the backward passes of softmax, LayerNorm and GELU as one
//! row-parallel pass each. Burn's flex backend runs the element-wise ops these replace on one
//! thread (README, Performance). Matrices are row-major unless a [`Mat`] says otherwise.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::wide;

/// Rows per parallel task of the row-wise kernels.
const ROWS_PER_TASK: usize = 32;
/// Elements per parallel task of the element-wise kernels.
const CHUNK: usize = 1 << 14;
/// Below this many multiply-adds a matrix product runs on one thread (as burn-flex decides).
const PARALLEL_PRODUCT: usize = 192 * 192 * 192;

/// A strided `rows × cols` view of f32 values: element `(i, j)` is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
pub struct Mat {
    pub ptr: *const f32,
    pub rows: usize,
    pub cols: usize,
    /// Row stride, in elements.
    pub rs: isize,
    /// Column stride, in elements.
    pub cs: isize,
}

// SAFETY: a `Mat` only reads, and its creators keep the buffer alive while it is used.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    /// A row-major `rows × cols` matrix over `values`.
    pub fn rows(values: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(values.len(), rows * cols, "matrix of {rows}×{cols}");
        Self {
            ptr: values.as_ptr(),
            rows,
            cols,
            rs: cols as isize,
            cs: 1,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Rows `start..start + len` of the view.
    fn row_block(self, start: usize, len: usize) -> Self {
        Self {
            rows: len,
            ..self.offset(start as isize * self.rs)
        }
    }

    /// Columns `start..start + len` of the view.
    fn col_block(self, start: usize, len: usize) -> Self {
        Self {
            cols: len,
            ..self.offset(start as isize * self.cs)
        }
    }

    /// The same view moved by `offset` elements (the next matrix of a batch).
    fn offset(self, offset: isize) -> Self {
        // SAFETY: callers pass offsets inside the buffer the view was made from.
        Self {
            ptr: unsafe { self.ptr.offset(offset) },
            ..self
        }
    }
}

/// Blocks a large product is cut into when it has every core: two per core.
fn all_cores() -> usize {
    2 * rayon::current_num_threads()
}

/// `out = a·b`, or `out += a·b` when `accumulate`; `out` is row-major `a.rows × b.cols`. A
/// large product runs as `blocks` blocks of rows (or of columns, whichever dimension is longer),
/// each one gemm on one core: on the 2-vCPU machines two per core beat gemm's own threading by
/// 15–25% at BERT's shapes (README, Performance). `blocks` ≤ 1: one gemm call on this thread.
///
/// # Safety
/// `out` has room for `a.rows · b.cols` values (initialised when `accumulate`), and `a` and `b`
/// point into live buffers covering their extents.
unsafe fn product_into(out: *mut f32, a: Mat, b: Mat, accumulate: bool, blocks: usize) {
    assert_eq!(a.cols, b.rows, "inner dimensions of a matrix product");
    let ld = b.cols;
    if blocks <= 1 || a.rows * a.cols * b.cols < PARALLEL_PRODUCT {
        // SAFETY: as the caller promised.
        return unsafe { gemm_into(out, ld, a, b, accumulate) };
    }
    let by_rows = a.rows >= b.cols;
    let dim = if by_rows { a.rows } else { b.cols };
    let step = dim.div_ceil(blocks).next_multiple_of(16);
    let out = OutPtr(out);
    (0..dim.div_ceil(step)).into_par_iter().for_each(|block| {
        let (start, len) = (block * step, step.min(dim - block * step));
        // SAFETY: the blocks are disjoint parts of `out` and of one operand's extent.
        unsafe {
            if by_rows {
                gemm_into(
                    out.at(start * ld),
                    ld,
                    a.row_block(start, len),
                    b,
                    accumulate,
                );
            } else {
                gemm_into(out.at(start), ld, a, b.col_block(start, len), accumulate);
            }
        }
    });
}

/// The output of a product, shared by the tasks that write its disjoint blocks.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: each task writes its own block of the buffer (`product_into`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// # Safety
    /// `offset` is inside the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// One gemm call on this thread: `out` (row stride `ld`) `= a·b`, or `+= a·b` when `accumulate`.
///
/// # Safety
/// As [`product_into`], with `out` covering `a.rows` rows of stride `ld`.
unsafe fn gemm_into(out: *mut f32, ld: usize, a: Mat, b: Mat, accumulate: bool) {
    // gemm: dst = alpha·dst + beta·lhs·rhs, dst read only when asked.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            out,
            1,
            ld as isize,
            accumulate,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `a·b` as a new row-major `a.rows × b.cols` buffer.
pub fn product(a: Mat, b: Mat) -> Vec<f32> {
    product_in_blocks(a, b, all_cores())
}

/// The two products `first` and `second` (each `(a, b)`: `a·b`) at once, each on half the
/// cores — a linear layer's input and weight gradients, which take the same arithmetic. On the
/// 2-vCPU machine each then is one gemm call on one core, its operands packed once instead of
/// once per block: 11–27% faster than the two one after the other at BERT's shapes (README,
/// Performance). Both outputs are allocated here, on the calling thread, as [`product`]'s are:
/// allocated on the workers they stayed in glibc's per-thread arenas (+50 MB peak in a run).
pub fn product_pair(first: (Mat, Mat), second: (Mat, Mat)) -> (Vec<f32>, Vec<f32>) {
    let blocks = rayon::current_num_threads() / 2;
    let mut outs = [first, second].map(|(a, b)| Vec::<f32>::with_capacity(a.rows * b.cols));
    let [out_first, out_second] = outs.each_mut().map(|out| OutPtr(out.as_mut_ptr()));
    // SAFETY: gemm writes every value of each output (it does not read them), then they are
    // initialised; the two outputs are separate buffers.
    unsafe {
        rayon::join(
            || product_into(out_first.at(0), first.0, first.1, false, blocks),
            || product_into(out_second.at(0), second.0, second.1, false, blocks),
        );
        for (out, (a, b)) in outs.iter_mut().zip([first, second]) {
            out.set_len(a.rows * b.cols);
        }
    }
    let [out_first, out_second] = outs;
    (out_first, out_second)
}

/// [`product`] in `blocks` blocks.
fn product_in_blocks(a: Mat, b: Mat, blocks: usize) -> Vec<f32> {
    let n = a.rows * b.cols;
    let mut out = Vec::with_capacity(n);
    // SAFETY: gemm writes all `n` values (it does not read them), then they are initialised.
    unsafe {
        product_into(out.as_mut_ptr(), a, b, false, blocks);
        out.set_len(n);
    }
    out
}

/// `a·b + bias` (bias `[b.cols]` added to every row) as a new row-major buffer: each row starts
/// as the bias, written once, and the product is accumulated onto it.
pub fn product_plus_bias(a: Mat, b: Mat, bias: &[f32]) -> Vec<f32> {
    assert_eq!(bias.len(), b.cols, "one bias per output column");
    let mut out = build(a.rows * b.cols, bias.len() * ROWS_PER_TASK, |_, chunk| {
        for (o, &v) in chunk.iter_mut().zip(bias.iter().cycle()) {
            o.write(v);
        }
    });
    // SAFETY: `out` holds `a.rows · b.cols` initialised values.
    unsafe { product_into(out.as_mut_ptr(), a, b, true, all_cores()) };
    out
}

/// The products of a batch, `out[i] = a[i]·b[i]`, as one row-major `[batch, a.rows, b.cols]`
/// buffer; matrix `i` of `a` starts at `a.ptr + a_offsets[i]` (likewise `b`). Small products
/// run one per core; large ones one after another, each on every core.
pub fn batched_product(a: Mat, a_offsets: &[isize], b: Mat, b_offsets: &[isize]) -> Vec<f32> {
    assert_eq!(a_offsets.len(), b_offsets.len(), "batch sizes");
    let each = a.rows * b.cols;
    let batch = a_offsets.len();
    let mut out: Vec<f32> = Vec::with_capacity(batch * each);
    let big = a.rows * a.cols * b.cols >= PARALLEL_PRODUCT;
    let run = |i: usize, dst: *mut f32, blocks: usize| {
        // SAFETY: `dst` is matrix `i` of `out`'s capacity; the offsets stay in the inputs.
        unsafe {
            product_into(
                dst,
                a.offset(a_offsets[i]),
                b.offset(b_offsets[i]),
                false,
                blocks,
            )
        }
    };
    if big || batch == 1 {
        for i in 0..batch {
            run(i, unsafe { out.as_mut_ptr().add(i * each) }, all_cores());
        }
    } else if each > 0 {
        out.spare_capacity_mut()
            .par_chunks_mut(each)
            .enumerate()
            .for_each(|(i, dst)| run(i, dst.as_mut_ptr().cast(), 1));
    }
    // SAFETY: every matrix of the batch was written.
    unsafe { out.set_len(batch * each) };
    out
}

/// Sums over the rows of a row-major `[rows, cols]` buffer: `[cols]` (a bias gradient). Blocks
/// of rows are summed on every core and the block sums added in order: the same bits however
/// the blocks were scheduled.
pub fn column_sums(values: &[f32], cols: usize) -> Vec<f32> {
    if cols == 0 {
        return Vec::new();
    }
    values
        .par_chunks(cols * ROWS_PER_TASK * 4)
        .map(|rows| {
            let mut sums = vec![0.0f32; cols];
            for row in rows.chunks_exact(cols) {
                add_assign(&mut sums, row);
            }
            sums
        })
        .collect::<Vec<_>>()
        .into_iter()
        .reduce(|mut a, b| {
            add_assign(&mut a, &b);
            a
        })
        .unwrap_or_else(|| vec![0.0; cols])
}

fn add_assign(acc: &mut [f32], values: &[f32]) {
    for (a, v) in acc.iter_mut().zip(values) {
        *a += v;
    }
}

/// A new buffer of `n` values written in parallel: `fill(first, chunk)` must write every value of
/// `chunk`, which starts at element `first`; chunks are `chunk_len` long (the last may be shorter).
fn build(
    n: usize,
    chunk_len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk_len.max(1))
        .enumerate()
        .for_each(|(c, chunk)| fill(c * chunk_len, chunk));
    // SAFETY: `fill` wrote all `n` values.
    unsafe { out.set_len(n) };
    out
}

/// `f(a[i], b[i])` for every element, in parallel (compiled for the widest vector unit).
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "element-wise operands of one size");
    build(a.len(), CHUNK, |first, chunk| {
        let (a, b) = (
            &a[first..first + chunk.len()],
            &b[first..first + chunk.len()],
        );
        zip_chunk(chunk, a, b, &f)
    })
}

/// `f(a[i])` for every element, in parallel (compiled for the widest vector unit).
pub fn map(a: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    build(a.len(), CHUNK, |first, chunk| {
        map_chunk(chunk, &a[first..first + chunk.len()], &f)
    })
}

#[inline(always)]
fn map_into<F: Fn(f32) -> f32>(out: &mut [MaybeUninit<f32>], a: &[f32], f: &F) {
    for (o, &x) in out.iter_mut().zip(a) {
        o.write(f(x));
    }
}

#[inline(always)]
fn zip_into<F: Fn(f32, f32) -> f32>(out: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], f: &F) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        o.write(f(x, y));
    }
}

/// [`map_into`] compiled for the widest vector unit the CPU has ([`wide::run`]), so that it and
/// the element function inlined into it vectorize as wide as they can.
fn map_chunk<F: Fn(f32) -> f32>(out: &mut [MaybeUninit<f32>], a: &[f32], f: &F) {
    wide::run(
        #[inline(always)]
        || map_into(out, a, f),
    )
}

/// [`zip_into`] compiled as [`map_chunk`] is.
fn zip_chunk<F: Fn(f32, f32) -> f32>(out: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], f: &F) {
    wide::run(
        #[inline(always)]
        || zip_into(out, a, b, f),
    )
}

/// The gradient of an embedding table `[rows, d]` from the gradient `[ids.len(), d]` of the rows
/// it looked up: zero where no id points (written on every core), each id's rows summed in.
pub fn embedding_backward(rows: usize, ids: &[usize], grad: &[f32], d: usize) -> Vec<f32> {
    assert_eq!(grad.len(), ids.len() * d, "one gradient row per id");
    let mut table = build(rows * d, CHUNK, |_, chunk| {
        for v in chunk {
            v.write(0.0);
        }
    });
    for (&id, g) in ids.iter().zip(grad.chunks_exact(d)) {
        add_assign(&mut table[id * d..(id + 1) * d], g);
    }
    table
}

/// The gradient of softmax over rows of `cols`: `y·(g − Σ g·y)` per row, from its output `y`.
pub fn softmax_backward(y: &[f32], grad: &[f32], cols: usize) -> Vec<f32> {
    assert_eq!(
        y.len(),
        grad.len(),
        "softmax output and gradient of one size"
    );
    build(y.len(), cols * ROWS_PER_TASK, |first, chunk| {
        for (r, out) in chunk.chunks_mut(cols).enumerate() {
            let start = first + r * cols;
            let (y, g) = (&y[start..start + cols], &grad[start..start + cols]);
            let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
            for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
                o.write(y * (g - dot));
            }
        }
    })
}

/// A row's mean and `1/√(variance + ε)` (the biased variance, as transformers' LayerNorm).
#[inline(always)]
fn mean_and_rstd(row: &[f32], epsilon: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = wide::lane_sum::<_, 16>(row, row, |v, _| v) / n;
    let var = wide::lane_sum::<_, 16>(row, row, |v, _| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + epsilon).sqrt())
}

/// The gradients of LayerNorm `y = x̂·γ + β` over rows of `γ.len()`, `x̂ = (x − mean)·rstd`:
/// `(dx, dγ, dβ)`, `dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))` with `dx̂ = g·γ`. The row
/// statistics are recomputed from `x`; `dγ` and `dβ` add per-block sums in order, as
/// [`column_sums`].
pub fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    grad: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let cols = gamma.len();
    assert_eq!(
        x.len(),
        grad.len(),
        "LayerNorm input and gradient of one size"
    );
    let rows_per_task = ROWS_PER_TASK * 2;
    let mut dx = Vec::with_capacity(x.len());
    let (dgamma, dbeta) = dx.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(cols * rows_per_task)
        .enumerate()
        .map(|(c, chunk)| {
            let (mut dgamma, mut dbeta) = (vec![0.0f32; cols], vec![0.0f32; cols]);
            let (mut xhat, mut dxhat) = (vec![0.0f32; cols], vec![0.0f32; cols]);
            wide::run(
                #[inline(always)]
                || {
                    for (r, out) in chunk.chunks_mut(cols).enumerate() {
                        let start = (c * rows_per_task + r) * cols;
                        let (x, g) = (&x[start..start + cols], &grad[start..start + cols]);
                        let (mean, rstd) = mean_and_rstd(x, epsilon);
                        for (j, (&x, &g)) in x.iter().zip(g).enumerate() {
                            let xhat_j = (x - mean) * rstd;
                            xhat[j] = xhat_j;
                            dgamma[j] += g * xhat_j;
                            dbeta[j] += g;
                            dxhat[j] = g * gamma[j];
                        }
                        let a = wide::lane_sum::<_, 16>(&dxhat, &dxhat, |d, _| d) / cols as f32;
                        let b = wide::lane_sum::<_, 16>(&dxhat, &xhat, |d, x| d * x) / cols as f32;
                        for ((o, &d), &x) in out.iter_mut().zip(&dxhat).zip(&xhat) {
                            o.write(rstd * (d - a - x * b));
                        }
                    }
                },
            );
            (dgamma, dbeta)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .reduce(|(mut g1, mut b1), (g2, b2)| {
            add_assign(&mut g1, &g2);
            add_assign(&mut b1, &b2);
            (g1, b1)
        })
        .unwrap_or_else(|| (vec![0.0; cols], vec![0.0; cols]));
    // SAFETY: every row of `dx` was written.
    unsafe { dx.set_len(x.len()) };
    (dx, dgamma, dbeta)
}

/// `eᵃ` for `a ≤ 0` in plain arithmetic (no libm call), so that loops over it vectorize: `a`
/// split as `n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `eʳ` by its Taylor series to degree 7 (truncation
/// below 1e-8 relative), times `2ⁿ` built from its bits; below −87 (and for NaN) it is `e⁻⁸⁷`
/// (≈ 1.6e-38). `a` must not be positive.
#[inline(always)]
fn exp_nonpositive(a: f32) -> f32 {
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // A select, not `f32::max` (which kept the loop from vectorizing); NaN becomes −87 too.
    let a = if a >= -87.0 { a } else { -87.0 };
    let n = (a * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (a - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0] {
        p = p * r + 1.0 / c;
    }
    // SAFETY: `a` is in [−87, 0] (callers pass `−x²/2`; NaN was replaced above), so `n` is an
    // integer in [−126, 0] and the cast is exact (the checked `as` kept the loop scalar).
    let n: i32 = unsafe { n.to_int_unchecked() };
    p * f32::from_bits(((n + 127) << 23) as u32)
}

/// `gelu(x) = x·Φ(x)` and its derivative `Φ(x) + x·φ(x)`, sharing one `exp(−x²/2)`: `erf` by
/// Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, about one f32 rounding of values near
/// 1), whose exponential is the same one the density `φ` needs.
#[inline(always)]
pub fn gelu_and_slope(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let gauss = exp_nonpositive(-0.5 * x * x);
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf = (1.0 - poly * gauss).copysign(x);
    let cdf = 0.5 * (1.0 + erf);
    let pdf = gauss * (0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2);
    (x * cdf, cdf + x * pdf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within 2 f32 roundings of libm's `exp` over the range GELU uses, and 0-ish far below.
    #[test]
    fn exp_without_libm_is_accurate() {
        for i in 0..=200_000 {
            let a = -(i as f32) * 0.000_5; // 0 down to -100
            let (ours, libm) = (exp_nonpositive(a), a.exp());
            let tolerance = 2.5 * f32::EPSILON * libm.max(f32::MIN_POSITIVE);
            if a >= -87.0 {
                assert!(
                    (ours - libm).abs() <= tolerance,
                    "exp({a}) = {ours}, libm {libm}"
                );
            } else {
                assert!(ours < 2e-38, "exp({a}) = {ours}");
            }
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 2e-38);
        assert!(exp_nonpositive(f32::NAN) < 2e-38);
        // GELU passes NaN through, and is x (slope 1) and 0 (slope 0) far out.
        assert!(gelu_and_slope(f32::NAN).0.is_nan());
        assert_eq!(gelu_and_slope(30.0), (30.0, 1.0));
        assert_eq!(gelu_and_slope(-30.0).0, 0.0);
    }

    /// Products against a plain triple loop, through transposed views and batch offsets.
    #[test]
    fn products_equal_the_textbook_loop() {
        let (m, k, n) = (37, 29, 41);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let naive = |a: &dyn Fn(usize, usize) -> f32, b: &dyn Fn(usize, usize) -> f32| {
            let mut out = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    out[i * n + j] = (0..k).map(|p| a(i, p) * b(p, j)).sum();
                }
            }
            out
        };
        let expected = naive(&|i, p| a[i * k + p], &|p, j| b[p * n + j]);
        assert_eq!(product(Mat::rows(&a, m, k), Mat::rows(&b, k, n)), expected);
        // bᵀ stored row-major, read through a transposed view.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        assert_eq!(
            product(Mat::rows(&a, m, k), Mat::rows(&bt, n, k).t()),
            expected
        );
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.5).collect();
        let with_bias = product_plus_bias(Mat::rows(&a, m, k), Mat::rows(&b, k, n), &bias);
        for (i, v) in with_bias.iter().enumerate() {
            assert_eq!(*v, expected[i] + bias[i % n]);
        }
        // A batch of two: the same product, then with `a` reversed.
        let ar: Vec<f32> = a.iter().rev().copied().collect();
        let both: Vec<f32> = a.iter().chain(&ar).copied().collect();
        let out = batched_product(
            Mat::rows(&both[..m * k], m, k),
            &[0, (m * k) as isize],
            Mat::rows(&b, k, n),
            &[0, 0],
        );
        assert_eq!(&out[..m * n], expected.as_slice());
        assert_eq!(
            &out[m * n..],
            product(Mat::rows(&ar, m, k), Mat::rows(&b, k, n))
        );
        let sums = column_sums(&expected, n);
        for j in 0..n {
            assert_eq!(sums[j], (0..m).map(|i| expected[i * n + j]).sum::<f32>());
        }
    }

    /// A row-major `rows × cols` buffer stored the other way round (`[cols, rows]`).
    fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols * rows)
            .map(|i| values[(i % rows) * cols + i / rows])
            .collect()
    }

    /// Products large enough to run on every core (blocks of rows when `m ≥ n`, of columns
    /// otherwise; sizes not multiples of the block), with and without a bias, through
    /// transposed views, and two at once (`product_pair`, outputs of different sizes); small
    /// integers, so every order of summation is exact.
    #[test]
    fn products_split_across_cores_equal_the_textbook_loop() {
        for (m, k, n) in [(301, 200, 250), (150, 200, 401)] {
            assert!(m * k * n >= PARALLEL_PRODUCT);
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
            let mut expected = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    expected[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                }
            }
            let (a_values, b_values) = (a, b);
            let a = Mat::rows(&a_values, m, k);
            let b = Mat::rows(&b_values, k, n);
            assert_eq!(product(a, b), expected, "{m}×{k}×{n}");
            let with_bias = product_plus_bias(a, b, &bias);
            let plus: Vec<f32> = expected
                .iter()
                .enumerate()
                .map(|(i, v)| v + bias[i % n])
                .collect();
            assert_eq!(with_bias, plus, "{m}×{k}×{n} with a bias");
            let (at, bt) = (transposed(&a_values, m, k), transposed(&b_values, k, n));
            let through_views = product(Mat::rows(&at, k, m).t(), Mat::rows(&bt, n, k).t());
            assert_eq!(
                through_views, expected,
                "{m}×{k}×{n} through transposed views"
            );
            // Two at once, in either order: each its own product.
            let views = (Mat::rows(&at, k, m).t(), Mat::rows(&bt, n, k).t());
            let (first, second) = product_pair((a, b), views);
            assert_eq!(
                (&first, &second),
                (&expected, &expected),
                "{m}×{k}×{n} in a pair"
            );
            let square = (Mat::rows(&b_values, k, n).t(), Mat::rows(&b_values, k, n));
            let (gram, plain) = product_pair(square, (a, b));
            assert_eq!(plain, expected, "{m}×{k}×{n} second in a pair");
            assert_eq!(
                gram,
                product_in_blocks(square.0, square.1, 1),
                "bᵀb in a pair"
            );
        }
    }

    /// Column sums, and LayerNorm's dβ (the column sums of its output gradient), add their
    /// blocks' sums in block order: the bits of a left-to-right fold over the blocks, however
    /// the blocks ran (rayon's reduction tree depends on which thread stole what).
    #[test]
    fn column_sums_add_block_sums_in_order() {
        let (rows, cols) = (5000, 24);
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as u64 * 2_654_435_761) % 1_000_003) as f32 * 1.37e-3 - 685.0)
            .collect();
        let in_order = |block_rows: usize| {
            let mut total = vec![0.0f32; cols];
            for block in values.chunks(cols * block_rows) {
                let mut sums = vec![0.0f32; cols];
                for row in block.chunks_exact(cols) {
                    add_assign(&mut sums, row);
                }
                add_assign(&mut total, &sums);
            }
            total
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&column_sums(&values, cols)),
            bits(&in_order(ROWS_PER_TASK * 4))
        );
        let x: Vec<f32> = values.iter().map(|v| v.sin()).collect();
        let (_, _, dbeta) = layer_norm_backward(&x, &vec![1.0; cols], &values, 1e-5);
        assert_eq!(bits(&dbeta), bits(&in_order(ROWS_PER_TASK * 2)));
    }
}
