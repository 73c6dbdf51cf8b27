//! The crate's error type.

/// What went wrong while building, differentiating or serialising a graph.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operator got inputs it cannot take: wrong shapes, ranks, dtypes or attributes.
    #[error("{op}: {detail}")]
    Invalid { op: String, detail: String },
    /// A graph input, initializer or output name is taken already.
    #[error("the name {0:?} is already used in this graph")]
    DuplicateName(String),
    /// A tensor's data does not match its shape or dtype.
    #[error("tensor: {0}")]
    Tensor(String),
    /// Gradients were asked for something that cannot have them.
    #[error("autodiff: {0}")]
    Autodiff(String),
    /// A parameter store operation failed (missing name, shape mismatch on import).
    #[error("parameter store: {0}")]
    Store(String),
    /// Bytes that are not an ONNX model.
    #[error("cannot decode ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for [`Error::Invalid`].
pub(crate) fn invalid(op: &str, detail: impl Into<String>) -> Error {
    Error::Invalid { op: op.to_string(), detail: detail.into() }
}
