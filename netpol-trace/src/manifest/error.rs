//! Loading errors, each naming the file, the document and, for a bad object, the field.

use std::path::PathBuf;

/// Why manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A directory holds no manifest files.
    #[error("{}: no *.yaml, *.yml or *.json files found", path.display())]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// A document is not valid YAML/JSON.
    #[error("{}: document {document}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based document number.
        document: usize,
        /// The parser's message.
        message: String,
    },
    /// A document (or `List` item) is not a well-formed object of its kind.
    #[error("{}: document {document}: {object}: {field}: {message}", path.display())]
    Object {
        /// The file.
        path: PathBuf,
        /// 1-based document number.
        document: usize,
        /// `Kind namespace/name` as far as known.
        object: String,
        /// Path of the offending field, e.g. `spec.ingress[0].ports[0].port` (`items[2].…` in a List).
        field: String,
        /// What is wrong.
        message: String,
    },
}
