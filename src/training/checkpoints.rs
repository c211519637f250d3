//! Burn's training checkpoints (model, optimizer state, learning-rate scheduler, one file each
//! per evaluation in `checkpoint/`), written so that a file is there whole or not at all, and
//! read back only as complete sets: a run killed while writing a checkpoint resumes from the
//! last complete one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

/// The files of one checkpoint: `<part>-<evaluation>.bpk`.
pub const PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// A Burn checkpointer whose files appear by rename after they were written and flushed, and
/// whose old checkpoints go only once a newer one is complete.
pub struct AtomicCheckpointer {
    directory: PathBuf,
    name: &'static str,
    /// Evaluations Burn asked to delete, shared by the parts of a set: their files are removed
    /// once a newer set is complete. Burn writes each part on its own thread and deletes the old
    /// set right after queueing the new one, so a failed write (a full disk) would otherwise
    /// leave no complete checkpoint at all.
    retired: Arc<Mutex<BTreeSet<usize>>>,
}

impl AtomicCheckpointer {
    /// Checkpoints named `name-<evaluation>.bpk` in `directory` (for reading one back).
    pub fn new(directory: &Path, name: &'static str) -> Self {
        Self {
            directory: directory.to_path_buf(),
            name,
            retired: Arc::default(),
        }
    }

    /// The checkpointers of one run, one per part of [`PARTS`], sharing what to delete.
    pub fn set(directory: &Path) -> [Self; 3] {
        let retired: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
        PARTS.map(|name| Self {
            retired: retired.clone(),
            ..Self::new(directory, name)
        })
    }

    /// Removes the files of retired evaluations older than the newest complete set.
    fn sweep(&self) -> std::io::Result<()> {
        let Some(&newest) = complete_checkpoints(&self.directory).last() else {
            return Ok(());
        };
        let Ok(mut retired) = self.retired.lock() else {
            return Ok(());
        };
        while let Some(&evaluation) = retired.first().filter(|&&e| e < newest) {
            for part in PARTS {
                match std::fs::remove_file(self.directory.join(format!("{part}-{evaluation}.bpk")))
                {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            retired.remove(&evaluation);
        }
        Ok(())
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
        let written = record.save(partial.clone()).and_then(|()| {
            std::fs::File::open(&partial)
                .and_then(|file| file.sync_all())
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(CheckpointerError::IOError)
        });
        if written.is_err() {
            // A full disk leaves a torn file: give its space back; the previous set stays.
            let _ = std::fs::remove_file(&partial);
        }
        written?;
        self.sweep().map_err(CheckpointerError::IOError)
    }

    /// Retires `evaluation`: its files go once a newer checkpoint is complete.
    fn delete(&self, evaluation: usize) -> Result<(), CheckpointerError> {
        if let Ok(mut retired) = self.retired.lock() {
            retired.insert(evaluation);
        }
        self.sweep().map_err(CheckpointerError::IOError)
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

    #[test]
    fn an_old_set_goes_only_once_a_newer_one_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str| std::fs::write(dir.path().join(name), b"x").unwrap();
        for part in PARTS {
            touch(&format!("{part}-1.bpk"));
        }
        let [model, optim, scheduler] = AtomicCheckpointer::set(dir.path());
        // Burn deletes set 1 while set 2 is still being written (its optimizer part failed).
        touch("model-2.bpk");
        Checkpointer::<burn::store::ModuleRecord>::delete(&model, 1).unwrap();
        Checkpointer::<burn::store::ModuleRecord>::delete(&optim, 1).unwrap();
        assert_eq!(complete_checkpoints(dir.path()), [1]);
        // Set 2 completes: set 1 goes.
        touch("optim-2.bpk");
        touch("scheduler-2.bpk");
        Checkpointer::<burn::store::ModuleRecord>::delete(&scheduler, 1).unwrap();
        assert_eq!(complete_checkpoints(dir.path()), [2]);
        assert!(!dir.path().join("model-1.bpk").exists());
    }
}
