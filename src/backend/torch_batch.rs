//! AdamW over every parameter at once on tch, as torch's multi-tensor AdamW: one optimizer step
//! as a dozen ops on flat buffers instead of nine per parameter, each a kernel launch on a GPU.
//! Burn steps the parameters one at a time, so a batched step [`push`]es each: it gets back
//! views into flat buffers allocated for the step (sized by the parameters the group stepped
//! last time), which [`run`] fills when the optimizer step is over. Nothing reads them before:
//! Burn's optimizer only keeps them. The step writes only into the buffers it allocated; where
//! every parameter and moment it is given is still its segment of the last step's buffers, those
//! are read as they are (no gathering). A parameter that does not fit (the first step, a new
//! parameter, other settings) takes the per-parameter step.

use std::cell::RefCell;

use burn_tch::TchTensor;
use tch::Tensor;

use super::AdamWStep;
use super::torch_ops::{adamw, update};

thread_local! {
    static BATCH: RefCell<Batch> = RefCell::new(Batch::default());
}

/// The batched steps of this thread.
#[derive(Default)]
struct Batch {
    /// Whether an optimizer step is being batched.
    active: bool,
    /// What the step multiplies every gradient by first, `[1]` on the device.
    factor: Option<Tensor>,
    /// One per AdamW setting (the weight decay groups), kept across steps.
    groups: Vec<Group>,
}

/// The parameters stepped with one AdamW setting.
struct Group {
    /// β₁, β₂, ε, λ.
    settings: [u32; 4],
    /// The buffers `[param, m, v]` the last step wrote.
    last: Option<[Tensor; 3]>,
    /// The size of every parameter the last step stepped, batched or not.
    last_sizes: Vec<i64>,
    /// This step's settings (those of its first parameter).
    step: Option<AdamWStep>,
    /// This step's buffers `[param, m, v]`, as large as the last step's parameters together.
    out: Option<[Tensor; 3]>,
    /// The parameters batched in this step, in order.
    pending: Vec<Pending>,
    /// The size of every parameter of this step, batched or not.
    sizes: Vec<i64>,
}

/// One batched parameter's inputs (flat views).
struct Pending {
    param: Tensor,
    grad: Tensor,
    moments: Option<[Tensor; 2]>,
}

impl Pending {
    fn numel(&self) -> i64 {
        self.grad.numel() as i64
    }
}

/// β₁, β₂, ε, λ as bits.
fn settings(step: &AdamWStep) -> [u32; 4] {
    [step.beta_1, step.beta_2, step.epsilon, step.weight_decay].map(f32::to_bits)
}

/// Row-major strides of `shape`.
fn strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Whether `t` is exactly the contiguous `numel` elements of `flat` from `offset`.
fn is_segment(t: &Tensor, flat: &Tensor, offset: i64, numel: i64) -> bool {
    let start = flat.data_ptr() as usize + offset as usize * flat.kind().elt_size_in_bytes();
    t.data_ptr() as usize == start && t.numel() as i64 == numel && t.is_contiguous()
}

impl Group {
    fn new(settings: [u32; 4]) -> Self {
        Self {
            settings,
            last: None,
            last_sizes: Vec::new(),
            step: None,
            out: None,
            pending: Vec::new(),
            sizes: Vec::new(),
        }
    }

    /// Where in this step's buffers a parameter of `numel` elements like `like` goes, if it
    /// fits: the step's settings match its first parameter's and the buffers have room.
    fn reserve(&mut self, step: &AdamWStep, numel: i64, like: &Tensor) -> Option<i64> {
        self.sizes.push(numel);
        let first = *self.step.get_or_insert(*step);
        if (first.lr, first.time) != (step.lr, step.time) {
            return None;
        }
        if self.out.is_none() {
            let capacity: i64 = self.last_sizes.iter().sum();
            if capacity == 0 {
                return None;
            }
            let empty = || Tensor::empty([capacity], (like.kind(), like.device()));
            self.out = Some([empty(), empty(), empty()]);
        }
        let used: i64 = self.pending.iter().map(Pending::numel).sum();
        let capacity = self.out.as_ref().map_or(0, |out| out[0].numel() as i64);
        (used + numel <= capacity).then_some(used)
    }

    /// Runs this step's update over its batched parameters (gradients times `factor`) into its
    /// buffers, and readies the group for the next step.
    fn flush(&mut self, factor: Option<&Tensor>) {
        let step = self.step.take();
        self.last_sizes = std::mem::take(&mut self.sizes);
        let pending = std::mem::take(&mut self.pending);
        let (Some(step), Some(out), false) = (step, self.out.take(), pending.is_empty()) else {
            self.last = None;
            return;
        };
        let numels: Vec<i64> = pending.iter().map(Pending::numel).collect();
        let used: i64 = numels.iter().sum();
        let [mut g, m, v] = out.each_ref().map(|t| t.narrow(0, 0, used));
        let grads: Vec<&Tensor> = pending.iter().map(|p| &p.grad).collect();
        let _ = Tensor::cat_out(&g, &grads, 0);
        if let Some(factor) = factor {
            let _ = g.g_mul_(factor);
        }
        let [param, m_old, v_old] = match self.reusable(&pending, &numels) {
            Some(last) => last.map(|t| t.narrow(0, 0, used)),
            None => gather(&pending, [&m, &v]),
        };
        update(&step, &mut g, [&m_old, &m], [&v_old, &v], &param);
        self.last = Some(out);
    }

    /// The last step's buffers, where every pending parameter and moment is its segment there.
    fn reusable(&self, pending: &[Pending], numels: &[i64]) -> Option<[Tensor; 3]> {
        let last = self.last.as_ref()?;
        let mut offset = 0;
        for (p, &numel) in pending.iter().zip(numels) {
            let [m, v] = p.moments.as_ref()?;
            let given = [&p.param, m, v];
            if !given
                .iter()
                .zip(last)
                .all(|(t, flat)| is_segment(t, flat, offset, numel))
            {
                return None;
            }
            offset += numel;
        }
        Some(last.each_ref().map(Tensor::shallow_clone))
    }
}

/// The pending parameters gathered into a new buffer and their moments into `[m, v]` (zeros
/// for a parameter without any yet): `[param, m, v]`, the moments then updated in place.
fn gather(pending: &[Pending], [m, v]: [&Tensor; 2]) -> [Tensor; 3] {
    let moment = |k: usize| -> Vec<Tensor> {
        pending
            .iter()
            .map(|p| match &p.moments {
                Some(moments) => moments[k].shallow_clone(),
                None => p.grad.zeros_like(),
            })
            .collect()
    };
    let _ = Tensor::cat_out(m, &moment(0), 0);
    let _ = Tensor::cat_out(v, &moment(1), 0);
    let params: Vec<&Tensor> = pending.iter().map(|p| &p.param).collect();
    [
        Tensor::cat(&params, 0),
        m.shallow_clone(),
        v.shallow_clone(),
    ]
}

/// One parameter's AdamW step: batched into the step [`run`] is running on this thread (views
/// into its buffers, filled when the step is over), else at once. `[param, m, v]`.
pub(super) fn push(
    step: &AdamWStep,
    param: &TchTensor,
    grad: TchTensor,
    moments: Option<[TchTensor; 2]>,
) -> [TchTensor; 3] {
    let done = BATCH.with_borrow_mut(|batch| {
        if !batch.active {
            return Err((grad, moments, None));
        }
        let key = settings(step);
        let group = match batch.groups.iter().position(|g| g.settings == key) {
            Some(i) => &mut batch.groups[i],
            None => {
                batch.groups.push(Group::new(key));
                batch.groups.last_mut().expect("just pushed")
            }
        };
        let shape = grad.tensor.size();
        let numel = grad.tensor.numel() as i64;
        let Some(offset) = group.reserve(step, numel, &grad.tensor) else {
            let factor = batch.factor.as_ref().map(Tensor::shallow_clone);
            return Err((grad, moments, factor));
        };
        let flat = |t: &Tensor| match t.dim() {
            1 => t.shallow_clone(),
            _ => t.reshape([-1]),
        };
        group.pending.push(Pending {
            param: flat(&param.tensor),
            grad: flat(&grad.tensor),
            moments: moments.map(|m| m.map(|t| flat(&t.tensor))),
        });
        let out = group.out.as_ref().expect("reserved");
        let strides = strides(&shape);
        Ok(out
            .each_ref()
            .map(|flat| TchTensor::new(flat.as_strided(&shape, &strides, offset))))
    });
    match done {
        Ok(views) => views,
        Err((grad, moments, factor)) => {
            let grad = match factor {
                Some(factor) => TchTensor::new(&grad.tensor * &factor),
                None => grad,
            };
            adamw(step, param, grad, moments)
        }
    }
}

/// Runs `steps` (one optimizer step over the parameters) with the AdamW steps of tch f32
/// parameters on this thread batched, every gradient times `factor` (`[1]`) first, and runs the
/// batched update when `steps` returns.
pub(super) fn run<R>(factor: Option<TchTensor>, steps: impl FnOnce() -> R) -> R {
    /// Ends the batch, also when `steps` panics (then without the update).
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            BATCH.with_borrow_mut(|batch| {
                let factor = batch.factor.take();
                batch.active = false;
                for group in &mut batch.groups {
                    if std::thread::panicking() {
                        *group = Group::new(group.settings);
                    } else {
                        tch::no_grad(|| group.flush(factor.as_ref()));
                    }
                }
            });
        }
    }
    BATCH.with_borrow_mut(|batch| {
        batch.active = true;
        batch.factor = factor.map(|f| f.tensor);
    });
    let _end = End;
    steps()
}

/// The factor of the batched step running on this thread, if one is.
pub(super) fn factor() -> Option<TchTensor> {
    BATCH.with_borrow(|batch| {
        let factor = batch.factor.as_ref().filter(|_| batch.active)?;
        Some(TchTensor::new(factor.shallow_clone()))
    })
}
