//! Memory allocator settings. Training allocates and frees tensors of several megabytes at every
//! operation; glibc's malloc returns blocks above its mmap threshold to the kernel when they are
//! freed, so the next step maps and zeroes fresh pages. On ndarray a quarter of the training time
//! went to those page faults (perf); keeping the blocks for reuse made training 20–25% faster on
//! ndarray, flex and tch on CPU (README, Performance).

/// Keeps freed blocks of up to 32 MiB (glibc's largest mmap threshold) in the heap for reuse and
/// never trims the heap. Call before any thread starts; does nothing off glibc.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
