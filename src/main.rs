fn main() {
    burnbert::alloc::reuse_freed_memory();
    if let Err(err) = burnbert::cli::main() {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
