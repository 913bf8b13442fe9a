//! Errors that name the field they are about.

use std::fmt;

/// One problem in the configuration, with the path of the field at fault,
/// e.g. `routes[2].upstream.nodes["10.0.0.1:80x"]: invalid port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path in the document (`routes[0].uri`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one configuration document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

impl FieldErrors {
    /// True when there is no error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid YAML or JSON.
    #[error("{origin}: not valid YAML/JSON: {message}")]
    Syntax {
        /// File name or `<embedded>`.
        origin: String,
        /// Parser message with line/column.
        message: String,
    },
    /// An APISIX standalone-style file without its `#END` marker: probably
    /// caught while being written, so nothing of it is applied.
    #[error("{origin}: incomplete file (no #END marker): an APISIX standalone file ends with a line #END; nothing was applied")]
    Incomplete {
        /// File name.
        origin: String,
    },
    /// The document parsed but has errors.
    #[error("{origin}: {count} error(s):\n{errors}", count = errors.0.len())]
    Invalid {
        /// File name or `<embedded>`.
        origin: String,
        /// Every error found.
        errors: FieldErrors,
    },
}

/// Push-style collector used while validating.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }
}
