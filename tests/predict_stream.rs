//! Streaming: a 1,000,000-row file is labelled with flat memory. Alone in its test binary, so
//! the peak RSS of child processes is this run's.

use std::io::Write;
use std::path::Path;
use std::process::Command;

#[test]
fn a_million_rows_stream_with_flat_memory() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/distilbert");
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("big.tsv"), dir.path().join("big.out.tsv"));
    let words = ["a", "fine", "film", "dull", "plot", "great", "cast", "bad"];
    let rows = 1_000_000;
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        writeln!(file, "id\ttext\tpayload").unwrap();
        let payload = "x".repeat(60);
        for i in 0..rows {
            let text = format!("{} {}", words[i % 8], words[(i / 8) % 8]);
            writeln!(file, "{i}\t{text}\t{payload}").unwrap();
        }
    }
    let size = std::fs::metadata(&input).unwrap().len();
    let status = Command::new(env!("CARGO_BIN_EXE_burnbert"))
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--max-len",
            "8",
            "--batch-size",
            "512",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let peak = usage.ru_maxrss as u64 * 1024;
    assert!(
        peak < size / 2,
        "peak RSS {peak} bytes for a {size}-byte file"
    );
    // Every row came out, in order.
    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id\ttext\tpayload\tlabel\tscores"));
    let mut count = 0;
    for (i, line) in lines.enumerate() {
        assert!(line.starts_with(&format!("{i}\t")), "row {i}: {line}");
        count += 1;
    }
    assert_eq!(count, rows);
}
