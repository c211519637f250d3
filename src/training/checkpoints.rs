//! Burn's training checkpoints (model, optimizer state, learning-rate scheduler, one file each
//! per evaluation in `checkpoint/`), written so that a file is there whole or not at all, and
//! read back only as complete sets: a run killed while writing a checkpoint resumes from the
//! last complete one.

use std::path::{Path, PathBuf};

use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

/// The files of one checkpoint: `<part>-<evaluation>.bpk`.
pub const PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// A Burn checkpointer whose files appear by rename after they were written and flushed.
pub struct AtomicCheckpointer {
    directory: PathBuf,
    name: &'static str,
}

impl AtomicCheckpointer {
    /// Checkpoints named `name-<evaluation>.bpk` in `directory`.
    pub fn new(directory: &Path, name: &'static str) -> Self {
        Self {
            directory: directory.to_path_buf(),
            name,
        }
    }

    fn path(&self, evaluation: usize) -> PathBuf {
        self.directory
            .join(format!("{}-{evaluation}.bpk", self.name))
    }
}

impl<R: Checkpoint> Checkpointer<R> for AtomicCheckpointer {
    fn save(&self, evaluation: usize, record: R) -> Result<(), CheckpointerError> {
        let path = self.path(evaluation);
        let partial = path.with_extension("bpk.partial");
        std::fs::create_dir_all(&self.directory).map_err(CheckpointerError::IOError)?;
        record.save(partial.clone())?;
        std::fs::File::open(&partial)
            .and_then(|file| file.sync_all())
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(CheckpointerError::IOError)
    }

    fn delete(&self, evaluation: usize) -> Result<(), CheckpointerError> {
        match std::fs::remove_file(self.path(evaluation)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CheckpointerError::IOError(e))
            }
            _ => Ok(()),
        }
    }

    fn restore(&self, evaluation: usize) -> Result<R, CheckpointerError> {
        R::load(self.path(evaluation))
    }
}

/// The evaluations that have every part of a checkpoint in `directory`, ascending.
pub fn complete_checkpoints(directory: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let names: Vec<String> = entries
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    let mut evaluations: Vec<usize> = names
        .iter()
        .filter_map(|name| {
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .filter(|n: &usize| {
            PARTS
                .iter()
                .all(|part| names.contains(&format!("{part}-{n}.bpk")))
        })
        .collect();
    evaluations.sort_unstable();
    evaluations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sets_with_every_part_count() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str| std::fs::write(dir.path().join(name), b"x").unwrap();
        for part in PARTS {
            touch(&format!("{part}-1.bpk"));
            touch(&format!("{part}-3.bpk"));
        }
        // A kill between two files, and one during a write.
        touch("model-4.bpk");
        touch("optim-4.bpk");
        touch("model-5.bpk");
        touch("optim-5.bpk");
        touch("scheduler-5.bpk.partial");
        assert_eq!(complete_checkpoints(dir.path()), [1, 3]);
        assert!(complete_checkpoints(&dir.path().join("missing")).is_empty());
    }
}
