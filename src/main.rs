fn main() {
    burnbert::alloc::reuse_freed_memory();
    if let Err(err) = burnbert::run_cli() {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
