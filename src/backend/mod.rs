//! The one module that knows which Burn backends this build was compiled with (cargo features
//! `ndarray`, `flex`, `wgpu`, `tch`) and turns `--backend`/`--device` into a Burn [`Device`].
#![allow(deprecated)] // burn-ndarray and burn-tch are deprecated upstream but are what we ship

use burn::tensor::{Device, FloatDType, Tensor};

#[cfg(feature = "flex")]
mod host_ops;
#[cfg(feature = "flex")]
mod kernels;
pub mod ops;
#[cfg(feature = "tch")]
mod torch_batch;
#[cfg(feature = "tch")]
mod torch_ops;
pub mod wide;

use crate::error::{Error, Result};

/// The float type a run computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats (every backend).
    #[default]
    F32,
    /// IEEE half precision, where the device computes in it (tch on CUDA, most GPUs on wgpu).
    F16,
    /// bfloat16, where the device computes in it (tch on CPU and recent CUDA cards).
    Bf16,
}

impl Precision {
    fn dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
            Self::Bf16 => FloatDType::BF16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }
}

/// A backend that can be compiled in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Burn's older pure-Rust CPU backend (`--features ndarray`).
    Ndarray,
    /// Burn's newer pure-Rust CPU backend (`--features flex`, the default).
    Flex,
    /// Any GPU through Vulkan, Metal or DX12 (`--features wgpu`).
    Wgpu,
    /// libtorch, CPU or CUDA (`--features tch`).
    Tch,
}

impl BackendKind {
    /// The backends this binary was built with.
    pub fn compiled() -> Vec<Self> {
        let mut kinds = Vec::new();
        if cfg!(feature = "ndarray") {
            kinds.push(Self::Ndarray);
        }
        if cfg!(feature = "flex") {
            kinds.push(Self::Flex);
        }
        if cfg!(feature = "wgpu") {
            kinds.push(Self::Wgpu);
        }
        if cfg!(feature = "tch") {
            kinds.push(Self::Tch);
        }
        kinds
    }

    /// The batch padding multiple when none is configured: wgpu compiles and tunes its kernels
    /// for each tensor shape, so fewer sequence lengths make it several times faster (README,
    /// "On a GPU"); the CPU backends gain nothing from extra padding.
    pub fn default_pad_multiple(self) -> usize {
        match self {
            Self::Wgpu => 32,
            _ => 1,
        }
    }

    /// The backend's name as `--backend` spells it (`ndarray`, `flex`, `wgpu`, `tch`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ndarray => "ndarray",
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
            Self::Tch => "tch",
        }
    }
}

/// Which device of a backend: `auto`, `cpu`, `gpu` or `gpu:N` (also `cuda:N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceSpec {
    Auto,
    Cpu,
    Gpu(usize),
}

fn parse_device(spec: &str) -> Result<DeviceSpec> {
    let bad = || {
        Error::Device(format!(
            "device '{spec}' is not one of auto, cpu, gpu, gpu:N (--device, --devices)"
        ))
    };
    match spec {
        "auto" => Ok(DeviceSpec::Auto),
        "cpu" => Ok(DeviceSpec::Cpu),
        "gpu" | "cuda" => Ok(DeviceSpec::Gpu(0)),
        _ => {
            let (kind, index) = spec.split_once(':').ok_or_else(bad)?;
            if kind != "gpu" && kind != "cuda" {
                return Err(bad());
            }
            Ok(DeviceSpec::Gpu(index.parse().map_err(|_| bad())?))
        }
    }
}

/// The backend of the default cargo feature: the fastest CPU backend that needs only cargo
/// (README, Performance).
pub const DEFAULT_BACKEND: BackendKind = BackendKind::Flex;

/// The backend a run uses: `backend` if given; else the only backend compiled in, or the one
/// enabled besides the default [`DEFAULT_BACKEND`]; several others need `--backend`.
pub fn resolve_backend(backend: Option<BackendKind>) -> Result<BackendKind> {
    pick_backend(backend, &BackendKind::compiled())
}

/// [`resolve_backend`] for a build with the backends `compiled`.
fn pick_backend(backend: Option<BackendKind>, compiled: &[BackendKind]) -> Result<BackendKind> {
    let names = || {
        compiled
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A build with `--features wgpu` (or tch, ndarray) means that backend, whatever the
    // default feature added.
    let chosen: Vec<BackendKind> = compiled
        .iter()
        .copied()
        .filter(|&k| k != DEFAULT_BACKEND)
        .collect();
    match (backend, chosen.as_slice()) {
        (Some(kind), _) if compiled.contains(&kind) => Ok(kind),
        (Some(kind), _) => Err(Error::Device(format!(
            "this build has no '{}' backend (built with: {}); rebuild with --features {}",
            kind.name(),
            names(),
            kind.name()
        ))),
        (None, [only]) => Ok(*only),
        (None, []) if compiled.contains(&DEFAULT_BACKEND) => Ok(DEFAULT_BACKEND),
        (None, []) => Err(Error::Device(
            "this build has no backend; build with --features flex, ndarray, wgpu or tch".into(),
        )),
        (None, _) => Err(Error::Device(format!(
            "this build has several backends ({}); choose one with --backend",
            names()
        ))),
    }
}

/// Whether tensors on `device` can be read and written on the host for the price of a memory
/// copy: the flex backend (with or without autodiff). Not ndarray, whose `into_data` walks the
/// elements one by one (35% of a training run's samples when GELU was read that way), nor the
/// GPU backends.
pub fn cheap_host_access(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return true;
    }
    let _ = device;
    false
}

/// The f32 values of a tensor in host memory, read where they are (no copy): what
/// [`host_values`] gives on flex. Holds the tensor's storage while it lives.
pub struct HostValues {
    #[cfg(feature = "flex")]
    tensor: burn_flex::FlexTensor,
    #[cfg(not(feature = "flex"))]
    never: std::convert::Infallible,
}

impl std::ops::Deref for HostValues {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        #[cfg(feature = "flex")]
        return self
            .tensor
            .as_slice()
            .expect("checked f32 and contiguous in host_values");
        #[cfg(not(feature = "flex"))]
        match self.never {}
    }
}

/// The values of `tensor` without copying them, where it is an f32, contiguous flex tensor (with
/// or without autodiff); `None` elsewhere. Reading a tensor that something else still holds (the
/// autodiff graph, the Learner's copy of the model) through `into_data` copies it on one thread.
pub fn host_values<const D: usize>(tensor: &Tensor<D>) -> Option<HostValues> {
    #[cfg(feature = "flex")]
    if let Ok(tensor) = tensor
        .clone()
        .inner()
        .try_into_primitive::<burn::backend::Flex>()
    {
        return tensor
            .as_slice::<f32>()
            .is_some()
            .then_some(HostValues { tensor });
    }
    let _ = tensor;
    None
}

/// What one AdamW step of a parameter needs besides its tensors.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// The learning rate.
    pub lr: f64,
    /// What each gradient is multiplied by first (clipping, loss unscaling).
    pub factor: f32,
    /// The first moment's decay rate.
    pub beta_1: f32,
    /// The second moment's decay rate.
    pub beta_2: f32,
    /// Added to the second moment's root.
    pub epsilon: f32,
    /// Decoupled weight decay λ.
    pub weight_decay: f32,
    /// The step's number, 1 for the first.
    pub time: usize,
}

/// Whether `tensor` is an f32 tensor on a tch device, where each op is a libtorch call of its
/// own (a kernel launch on a GPU), and which [`torch_adamw`] takes.
pub fn on_tch_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.dtype() == burn::tensor::DType::F32 && on_tch(tensor)
}

/// `tensor`'s libtorch tensor (autodiff stripped), where it lives on a tch device.
#[cfg(feature = "tch")]
fn tch_primitive<const D: usize>(tensor: Tensor<D>) -> Option<burn_tch::TchTensor> {
    tensor
        .inner()
        .try_into_primitive::<burn::backend::LibTorch>()
        .ok()
}

/// Whether `tensor` lives on a tch device (with or without autodiff).
fn on_tch<const D: usize>(tensor: &Tensor<D>) -> bool {
    #[cfg(feature = "tch")]
    return tch_primitive(tensor.clone()).is_some();
    #[cfg(not(feature = "tch"))]
    {
        let _ = tensor;
        false
    }
}

/// The L2 norm of all `grads` together, `[1]`, every one [`on_tch_f32`]: on a CPU one libtorch
/// norm per gradient and one of the norms, as torch's `clip_grad_norm_` computes it; on a GPU
/// the norm of them all concatenated (two kernel launches instead of one per gradient).
pub fn tch_global_norm(grads: &[Tensor<1>]) -> Tensor<1> {
    #[cfg(feature = "tch")]
    {
        let grads: Vec<_> = grads
            .iter()
            .map(|g| tch_primitive(g.clone()).expect("every gradient on_tch_f32"))
            .collect();
        let gathered = grads.first().is_some_and(|g| torch_ops::on_gpu(&g.tensor));
        Tensor::from_primitive::<burn::backend::LibTorch>(torch_ops::global_norm(&grads, gathered))
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = grads;
        unreachable!("tch_global_norm without the tch backend")
    }
}

/// One AdamW step of `param` done by libtorch in place, a handful of whole-tensor ops instead
/// of Burn's fifteen-odd (each a kernel launch on a GPU): the new parameter and moments
/// `[param, m, v]`. Only where every tensor is [`on_tch_f32`]; `moments` `None` on the
/// first step.
pub fn torch_adamw<const D: usize>(
    step: &AdamWStep,
    param: &Tensor<D>,
    grad: Tensor<D>,
    moments: Option<[Tensor<D>; 2]>,
) -> [Tensor<D>; 3] {
    #[cfg(feature = "tch")]
    {
        let tch = |t: Tensor<D>| tch_primitive(t).expect("every tensor on_tch_f32");
        let moments = moments.map(|m| m.map(tch));
        torch_batch::push(step, &tch(param.clone()), tch(grad), moments)
            .map(Tensor::from_primitive::<burn::backend::LibTorch>)
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = (step, param, grad, moments);
        unreachable!("torch_adamw without the tch backend")
    }
}

/// Whether the AdamW steps of a whole optimizer step on `device` should run as one
/// ([`batched_torch_adamw`]): tch on a GPU, where each op is a kernel launch and a small model's
/// step is bound by launches. Not on a CPU, where gathering the gradients into one buffer costs
/// a pass over them the per-parameter step does not make.
pub fn batches_torch_adamw(device: &Device) -> bool {
    #[cfg(feature = "tch")]
    return tch_primitive(Tensor::<1>::empty([0], device))
        .is_some_and(|t| torch_ops::on_gpu(&t.tensor));
    #[cfg(not(feature = "tch"))]
    {
        let _ = device;
        false
    }
}

/// Runs `steps` (one optimizer step: `ModuleOptimizer::step`) with the [`torch_adamw`] steps
/// on this thread batched, as torch's multi-tensor AdamW: each parameter gets views into flat
/// buffers, and when `steps` returns one update of about a dozen ops over all of them fills
/// them (instead of nine ops per parameter), every gradient first multiplied by `factor` (`[1]`,
/// on the parameters' device: clipping, loss unscaling). Parameters that take Burn's own step
/// inside it get their gradient times `factor` from [`times_batch_factor`].
pub fn batched_torch_adamw<R>(factor: Option<Tensor<1>>, steps: impl FnOnce() -> R) -> R {
    #[cfg(feature = "tch")]
    {
        let factor = factor.map(|f| tch_primitive(f).expect("the factor on the tch device"));
        torch_batch::run(factor, steps)
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = factor;
        steps()
    }
}

/// `grad` times the factor of the [`batched_torch_adamw`] step running on this thread, if one
/// is: for a parameter that takes Burn's own AdamW step inside it.
pub fn times_batch_factor<const D: usize>(grad: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if let Some(factor) = torch_batch::factor() {
        let factor = Tensor::<1>::from_primitive::<burn::backend::LibTorch>(factor);
        let dtype = grad.dtype();
        return grad * factor.cast(dtype).reshape([1; D]);
    }
    grad
}

/// How a device's fused attention reads a boolean mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskSense {
    /// `true` hides a key: Burn's convention.
    Hides,
    /// `true` keeps a key: burn-tch 0.22.1 hands Burn's mask to torch's SDPA unchanged, and a
    /// boolean mask means the opposite there, so on tch the mask is passed inverted.
    Keeps,
}

/// Whether Burn's fused attention (`burn::tensor::module::attention`) computes burnbert's
/// attention right on `device`, and how it reads the mask; `None` where it does not (inference
/// then keeps the unfused ops). With `with_bias`, it must also add an attention bias and apply
/// a custom scale (DeBERTa's relative positions). Checked once per device and kind on a small
/// example, where a query with every key hidden must also come out finite (ModernBERT's local
/// window hides every key from a padding query far from the text).
pub fn fused_attention(device: &Device, with_bias: bool) -> Option<MaskSense> {
    type Checked = Vec<(Device, bool, Option<MaskSense>)>;
    static CHECKED: std::sync::Mutex<Checked> = std::sync::Mutex::new(Vec::new());
    let device = device.clone().without_autodiff();
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((.., sense)) = checked
        .iter()
        .find(|(d, bias, _)| *d == device && *bias == with_bias)
    {
        return *sense;
    }
    let sense = [MaskSense::Hides, MaskSense::Keeps]
        .into_iter()
        .find(|&sense| fused_attention_check(&device, with_bias, sense));
    checked.push((device, with_bias, sense));
    sense
}

/// Whether fused attention on `device` gives the expected values with the mask passed as
/// `sense` reads it.
fn fused_attention_check(device: &Device, with_bias: bool, sense: MaskSense) -> bool {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Bool, Tensor, TensorData};
    let tensor = |values: Vec<f32>, shape: [usize; 4]| {
        Tensor::<4>::from_data(TensorData::new(values, shape), device)
    };
    // Burn's mask (`true` hides), in the sense the device reads.
    let mask = |hidden: Vec<bool>, shape: [usize; 4]| {
        let hidden = Tensor::<4, Bool>::from_data(TensorData::new(hidden, shape), device);
        match sense {
            MaskSense::Hides => hidden,
            MaskSense::Keeps => hidden.bool_not(),
        }
    };
    let (out, expected) = if with_bias {
        // Three keys with raw scores 1, 0, 0 scaled by 10, biases 0, 10, 20. The first query
        // hides the third key: scores 10, 10, hidden, so the mean of the values 1 and 3 (without
        // the scale about 3, without the bias about 1, without the mask about 5); the second
        // hides every key.
        let out = attention(
            tensor(vec![1.0, 1.0], [1, 1, 2, 1]),
            tensor(vec![1.0, 0.0, 0.0], [1, 1, 3, 1]),
            tensor(vec![1.0, 3.0, 5.0], [1, 1, 3, 1]),
            Some(mask(
                vec![false, false, true, true, true, true],
                [1, 1, 2, 3],
            )),
            Some(tensor(vec![0.0, 10.0, 20.0], [1, 1, 1, 3]).expand([1, 1, 2, 3])),
            AttentionModuleOptions {
                scale: Some(10.0),
                ..AttentionModuleOptions::default()
            },
        );
        (out, 2.0)
    } else {
        // Two keys with equal scores, values 1 and 3. The first query hides the second key: 1;
        // the second hides both.
        let out = attention(
            tensor(vec![1.0, 1.0], [1, 1, 2, 1]),
            tensor(vec![0.0, 0.0], [1, 1, 2, 1]),
            tensor(vec![1.0, 3.0], [1, 1, 2, 1]),
            Some(mask(vec![false, true, true, true], [1, 1, 2, 2])),
            None,
            AttentionModuleOptions::default(),
        );
        (out, 1.0)
    };
    out.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .is_ok_and(|v| v.len() == 2 && (v[0] - expected).abs() < 1e-2 && v[1].is_finite())
}

/// Picks the backend ([`resolve_backend`]) and the device. Every float tensor created on the
/// device (parameters, activations, gradients, optimizer state) then has the `precision` type;
/// a device that cannot compute in it is an error.
pub fn select_device(
    backend: Option<BackendKind>,
    device: &str,
    precision: Precision,
) -> Result<Device> {
    let kind = resolve_backend(backend)?;
    let spec = parse_device(device)?;
    let mut selected = device_of(kind, spec, device)?;
    if precision != Precision::F32 {
        let dtype = precision.dtype();
        if !selected.supports_dtype(dtype) {
            return Err(Error::Device(format!(
                "the {} backend cannot compute in {} on device '{device}'; use --precision f32",
                kind.name(),
                precision.name()
            )));
        }
        let already = selected.settings().float_dtype == dtype;
        if let Err(e) = selected.configure(dtype)
            && !already
        {
            return Err(Error::Device(format!(
                "cannot switch the {} device to {}: {e:?}",
                kind.name(),
                precision.name()
            )));
        }
    }
    Ok(selected)
}

/// The names of every device of `backend` that [`select_device`] takes: its GPUs, or the one
/// CPU of a CPU backend.
pub fn all_devices(backend: Option<BackendKind>) -> Result<Vec<String>> {
    let gpus = match resolve_backend(backend)? {
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Some(Device::enumerate(burn::tensor::DeviceType::Wgpu).len()),
        #[cfg(feature = "tch")]
        BackendKind::Tch => Some(Device::enumerate(burn::tensor::DeviceType::LibTorch).len()),
        _ => None,
    };
    match gpus {
        None => Ok(vec!["cpu".into()]),
        Some(0) => Err(Error::Device(
            "--devices all: the backend sees no GPU".into(),
        )),
        Some(n) => Ok((0..n).map(|i| format!("gpu:{i}")).collect()),
    }
}

fn device_of(kind: BackendKind, spec: DeviceSpec, device: &str) -> Result<Device> {
    let unsupported = || {
        Error::Device(format!(
            "the {} backend has no device '{device}'",
            kind.name()
        ))
    };
    match kind {
        #[cfg(feature = "ndarray")]
        BackendKind::Ndarray => match spec {
            DeviceSpec::Auto | DeviceSpec::Cpu => Ok(Device::ndarray()),
            DeviceSpec::Gpu(_) => Err(unsupported()),
        },
        #[cfg(feature = "flex")]
        BackendKind::Flex => match spec {
            DeviceSpec::Auto | DeviceSpec::Cpu => Ok(Device::flex()),
            DeviceSpec::Gpu(_) => Err(unsupported()),
        },
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            use burn::tensor::DeviceKind;
            Ok(Device::wgpu(match spec {
                DeviceSpec::Auto => DeviceKind::DefaultDevice,
                DeviceSpec::Cpu => DeviceKind::Cpu,
                DeviceSpec::Gpu(i) => DeviceKind::DiscreteGpu(i),
            }))
        }
        #[cfg(feature = "tch")]
        BackendKind::Tch => {
            // libtorch lists its CUDA devices; none means a CPU libtorch, or CUDA libraries
            // that were not on the library path when the program started.
            let cuda = Device::enumerate(burn::tensor::DeviceType::LibTorch).len();
            match spec {
                DeviceSpec::Auto if cuda > 0 => Ok(Device::libtorch_cuda(0)),
                DeviceSpec::Auto | DeviceSpec::Cpu => Ok(Device::libtorch()),
                DeviceSpec::Gpu(i) if i < cuda => Ok(Device::libtorch_cuda(i)),
                DeviceSpec::Gpu(_) => Err(Error::Device(format!(
                    "the tch backend sees {cuda} CUDA device(s), so no '{device}': is LIBTORCH a \
                     CUDA build, and are its libraries on LD_LIBRARY_PATH?"
                ))),
            }
        }
        #[allow(unreachable_patterns)]
        _ => Err(unsupported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flex tensor's values are read where they are, with or without autodiff (the same memory
    /// twice, the right values); a transposed view or an f16 tensor gives `None`.
    #[cfg(feature = "flex")]
    #[test]
    fn host_values_reads_flex_tensors_in_place() {
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        for device in [Device::flex(), Device::flex().autodiff()] {
            let tensor = Tensor::<2>::from_data(
                burn::tensor::TensorData::new(values.clone(), [2, 3]),
                &device,
            );
            let (a, b) = (host_values(&tensor).unwrap(), host_values(&tensor).unwrap());
            assert_eq!(&*a, values.as_slice());
            assert_eq!(a.as_ptr(), b.as_ptr(), "a copy, not the tensor's memory");
            assert!(host_values(&tensor.clone().transpose()).is_none());
            assert!(host_values(&tensor.cast(burn::tensor::DType::F16)).is_none());
        }
    }

    #[test]
    fn device_specs_parse() {
        assert_eq!(parse_device("gpu:2").unwrap(), DeviceSpec::Gpu(2));
        assert_eq!(parse_device("cuda:1").unwrap(), DeviceSpec::Gpu(1));
        assert_eq!(parse_device("cpu").unwrap(), DeviceSpec::Cpu);
        assert!(parse_device("tpu:0").is_err());
        assert!(parse_device("gpu:x").is_err());
    }

    #[test]
    fn the_backend_named_by_a_feature_wins_over_the_default() {
        use BackendKind::*;
        let pick = |compiled: &[BackendKind]| pick_backend(None, compiled).ok();
        assert_eq!(pick(&[Flex]), Some(Flex));
        assert_eq!(pick(&[Ndarray, Flex]), Some(Ndarray));
        assert_eq!(pick(&[Flex, Wgpu]), Some(Wgpu));
        assert_eq!(pick(&[Ndarray]), Some(Ndarray));
        assert_eq!(pick(&[Flex, Wgpu, Tch]), None);
        assert_eq!(pick(&[]), None);
        assert_eq!(
            pick_backend(Some(Flex), &[Flex, Wgpu, Tch]).ok(),
            Some(Flex)
        );
        assert!(pick_backend(Some(Tch), &[Flex]).is_err());
    }

    #[test]
    fn only_wgpu_pads_batches_to_a_multiple_by_default() {
        assert_eq!(BackendKind::Wgpu.default_pad_multiple(), 32);
        for kind in [BackendKind::Ndarray, BackendKind::Flex, BackendKind::Tch] {
            assert_eq!(kind.default_pad_multiple(), 1, "{kind:?}");
        }
    }

    #[test]
    fn a_backend_not_built_in_is_a_clear_error() {
        let missing = [
            BackendKind::Ndarray,
            BackendKind::Flex,
            BackendKind::Wgpu,
            BackendKind::Tch,
        ]
        .into_iter()
        .find(|k| !BackendKind::compiled().contains(k));
        if let Some(kind) = missing {
            let err = select_device(Some(kind), "auto", Precision::F32)
                .unwrap_err()
                .to_string();
            assert!(err.contains("rebuild with --features"), "{err}");
        }
    }
}
