//! Typed errors. Every message is one line that names the file, tensor, row or field at fault.

use std::path::PathBuf;

/// Everything that can go wrong in burnbert, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON/TOML file is malformed or a field has the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model configuration asks for something burnbert does not support.
    #[error("{path}: {message}")]
    UnsupportedConfig {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint is missing a tensor, has a wrong shape, or cannot be decoded.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model could not be found locally, in the Hugging Face cache, or downloaded.
    #[error("model '{model}' not found: {message}")]
    ModelNotFound {
        /// The model as given (directory or hub id).
        model: String,
        /// Where it was looked for and why it failed.
        message: String,
    },
    /// Tokenizer files are missing or invalid, or encoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// User input (a data row, a CLI value) is invalid.
    #[error("{0}")]
    Input(String),
    /// The requested backend/device is not available in this build.
    #[error("{0}")]
    Device(String),
}

impl Error {
    /// Wraps an [`std::io::Error`] with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
