//! Memory allocator settings. Training allocates and frees tensors of several megabytes at every
//! operation. glibc's malloc serves blocks above its mmap threshold with a fresh `mmap` and
//! returns them to the kernel when freed, so the next step faults and zeroes every page again.
//!
//! The largest tensors of a BERT step are the word embeddings' gradient and the AdamW
//! temporaries of the same `[vocab, hidden]` shape (47 MB for all-MiniLM-L6-v2), above even
//! the highest threshold glibc accepts (32 MiB). Measured on a 2-core machine (README,
//! Performance): with the kernel's transparent huge pages in `madvise` mode each such tensor
//! costs ~11,500 page faults of 4 KiB, 1.15 million faults in a 20-step run; in `always` mode
//! the same tensors fault in 2 MiB pages, which is why this cost hides on some machines.

/// Serves every block from one heap for all threads (no `mmap` per allocation), keeps blocks
/// up to 32 MiB out of the mmap path even where `M_MMAP_MAX` is ignored, and never trims the
/// heap, so freed tensors are reused at the next step. Call before any thread starts; does nothing off glibc.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        // One arena for all threads: the training step runs its two half batches on the
        // worker threads, whose own arenas (heaps of at most 64 MiB each) held +190 MB at
        // peak and faulted 3x the pages (README, Performance).
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
