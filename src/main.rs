use clap::Parser;

fn main() {
    let cli = burnbert::cli::Cli::parse();
    if let Err(err) = burnbert::cli::run(cli) {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
