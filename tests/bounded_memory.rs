//! Training reads its data through an on-disk row index: a file whose rows alone (let alone
//! their tokens) would not fit the memory budget trains within it.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::{fixtures, s};

/// Peak RSS allowed to the whole training process (the tiny test model).
const BUDGET_MB: f64 = 100.0;

/// Runs `burnbert` with `args` and `BURNBERT_CACHE=cache`; returns (stdout, stderr, peak RSS
/// in MB).
fn run_measured(args: &[&str], cache: &std::path::Path) -> (String, String, f64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_burnbert"))
        .args(args)
        .env("BURNBERT_CACHE", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).map(|_| text)
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 reaps the child and reports its own peak RSS (not that of other tests' children).
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    let (stdout, stderr) = (
        stdout.join().unwrap().unwrap(),
        stderr.join().unwrap().unwrap(),
    );
    let exit = std::process::ExitStatus::from_raw(status);
    assert!(exit.success(), "burnbert failed: {exit:?}\n{stderr}");
    (stdout, stderr, usage.ru_maxrss as f64 / 1024.0)
}

#[test]
fn a_file_larger_than_the_memory_budget_trains_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.tsv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&train).unwrap());
    writeln!(file, "text\tlabel").unwrap();
    let words = [
        "good", "bad", "fine", "awful", "great", "dull", "film", "plot",
    ];
    let rows = 3_000_000;
    for i in 0..rows {
        let w = |k: usize| words[(i * 7 + k * 3) % words.len()];
        writeln!(
            file,
            "the {} {} of {} was {} indeed {i}\t{}",
            w(0),
            w(1),
            w(2),
            w(3),
            i % 3
        )
        .unwrap();
    }
    drop(file);
    let size_mb = std::fs::metadata(&train).unwrap().len() as f64 / 1e6;
    // Held in memory, the rows' text alone is the file's size; their tokens (8 bytes each,
    // ids and segment ids, about 12 per row) come on top.
    let in_memory_mb = size_mb + rows as f64 * 12.0 * 8.0 / 1e6;
    assert!(in_memory_mb > 2.0 * BUDGET_MB, "{in_memory_mb} MB");

    let model = fixtures().join("roberta");
    let out = dir.path().join("run");
    let cache = dir.path().join("cache");
    let args = [
        "train",
        "--model",
        s(&model),
        "--train",
        s(&train),
        "--valid-ratio",
        "0.0001",
        "--max-steps",
        "20",
        "--batch-size",
        "16",
        "--max-len",
        "24",
        "--no-tui",
        "--output",
        s(&out),
    ];
    let (stdout, _, peak_mb) = run_measured(&args, &cache);
    eprintln!(
        "peak RSS {peak_mb:.0} MB for a {size_mb:.0} MB file ({in_memory_mb:.0} MB in memory)"
    );
    assert!(
        stdout.contains("2999700 train / 300 valid examples"),
        "{stdout}"
    );
    assert!(stdout.contains("step 20/20"), "{stdout}");
    assert!(out.join("model.safetensors").is_file());
    assert!(
        peak_mb < BUDGET_MB,
        "peak RSS {peak_mb:.0} MB (budget {BUDGET_MB} MB, file {size_mb:.0} MB)"
    );
    // A second run reuses the index of the unchanged file.
    let again = dir.path().join("again");
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == s(&out) { s(&again) } else { a })
        .collect();
    let (_, stderr, _) = run_measured(&args, &cache);
    assert!(
        stderr.contains("0 data files indexed, 1 unchanged ones reused"),
        "{stderr}"
    );
}
