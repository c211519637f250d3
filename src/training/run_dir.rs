//! The run directory: where it is, whether it resumes, its lock, and forgetting what a killed
//! run logged after its last complete checkpoint.

use std::path::{Path, PathBuf};

use super::checkpoints::complete_checkpoints;
use super::logger::read_history;
use crate::config::TrainConfig;
use crate::data::StreamState;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// The run directory of `config` and the evaluation it resumes after (`--resume`: the last
/// complete checkpoint). Checks only; nothing is written.
pub(super) fn resolve_run(config: &TrainConfig) -> Result<(PathBuf, Option<usize>)> {
    let output = config
        .output
        .clone()
        .unwrap_or_else(|| default_output(config));
    if config.resume {
        let Some(evaluation) = last_checkpoint(&output) else {
            return Err(Error::Input(format!(
                "--resume: no complete checkpoint (model, optimizer and scheduler of one evaluation) in {}; start the run again without --resume",
                output.join("checkpoint").display()
            )));
        };
        return Ok((output, Some(evaluation)));
    }
    // A run killed before its first complete checkpoint left nothing to resume: its directory
    // is reused (and cleared when it is opened).
    if last_checkpoint(&output).is_some() {
        return Err(Error::Input(format!(
            "{} already holds a run; use --resume to continue it or another --output",
            output.display()
        )));
    }
    Ok((output, None))
}

/// Creates and locks `output`, forgets what was logged after `resume_from` and saves the
/// configuration. The lock holds while the returned file lives.
pub(super) fn open_run_dir(
    output: &Path,
    resume_from: Option<usize>,
    config: &TrainConfig,
) -> Result<std::fs::File> {
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let lock = lock_run_dir(output)?;
    forget_after(output, resume_from.unwrap_or(0))?;
    write_atomic(
        &output.join("train_config.toml"),
        config.to_toml().as_bytes(),
    )?;
    Ok(lock)
}

/// Where the stream stood at `evaluation` of the run in `output`, in batches served. The
/// optimizer steps the resumed stream counts there must be those the run logged: a run
/// resumed with another batch size, accumulation or device count is refused.
pub(super) fn stream_position(
    output: &Path,
    evaluation: usize,
    stream: &StreamState,
) -> Result<usize> {
    let history = read_history(&output.join("metrics.jsonl"))?;
    let line = history.get("train").and_then(|h| h.get(&evaluation));
    let (Some(&epoch), step) = (
        line.and_then(|v| v.get("epoch")),
        line.and_then(|v| v.get("step")),
    ) else {
        return Err(Error::Input(format!(
            "--resume: {} has no training line for evaluation {evaluation}",
            output.join("metrics.jsonl").display()
        )));
    };
    let position = (epoch * stream.per_epoch as f64).round() as usize;
    let counted = stream.steps_at(position);
    match step {
        Some(&step) if step as usize != counted || !stream.ends_step(position) => {
            Err(Error::Input(format!(
                "--resume: evaluation {evaluation} was taken after step {step} (epoch {epoch:.2}), which is not where a step of this batch size, gradient accumulation and device count ends; resume with the run's settings"
            )))
        }
        _ => Ok(position),
    }
}

/// The last evaluation with a complete checkpoint (every part) in `dir/checkpoint`.
pub(super) fn last_checkpoint(dir: &Path) -> Option<usize> {
    complete_checkpoints(&dir.join("checkpoint"))
        .last()
        .copied()
}

/// Holds `output/.lock` for as long as the returned file lives, so that a second `train` on the
/// same output is refused instead of mixing two runs' files. The operating system releases the
/// lock when the process ends, killed or not.
pub(super) fn lock_run_dir(output: &Path) -> Result<std::fs::File> {
    let path = output.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Input(format!(
            "another burnbert train is writing to {} (it holds {}); wait for it or choose another --output",
            output.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Forgets what a killed run logged after the checkpoint it resumes from (`evaluation`; 0 for
/// a run that never completed one): the `metrics.jsonl` lines and Burn's metric logs of later
/// evaluations, which would otherwise mix with the new ones, and incomplete checkpoints.
pub(super) fn forget_after(output: &Path, evaluation: usize) -> Result<()> {
    let metrics = output.join("metrics.jsonl");
    if let Ok(text) = std::fs::read_to_string(&metrics) {
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("evaluation")?.as_u64())
                    .is_some_and(|e| e as usize <= evaluation)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        if kept.len() != text.len() {
            write_atomic(&metrics, kept.as_bytes())?;
        }
    }
    let later = |name: &str, prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split(['.', '-']).next()?.parse::<usize>().ok())
            .is_some_and(|n| n > evaluation)
    };
    for (dir, prefixes) in [
        ("train", &["epoch-"][..]),
        ("valid", &["epoch-"][..]),
        ("checkpoint", &["model-", "optim-", "scheduler-"][..]),
    ] {
        let dir = output.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| later(&name, p)) {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| Error::io(&path, e))?;
            }
        }
    }
    Ok(())
}

fn default_output(config: &TrainConfig) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("{}-{stamp}", config.name))
}
