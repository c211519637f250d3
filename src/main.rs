fn main() {
    if let Err(err) = burnbert::cli::main() {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
