//! The `status` and `reason` values every manifest writes: one enum each, so a stage cannot misspell a value that
//! users filter on.
use crate::named::Named;
use serde::{Deserialize, Serialize};

/// A row's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted: the next stage works on it.
    Ok,
    /// Rejected, with a [`Reason`].
    Rejected,
    /// A duplicate of another row (`dedup` only), with its kind as the reason.
    Duplicate,
}

impl Named for Status {
    const ALL: &'static [Self] = &[Status::Ok, Status::Rejected, Status::Duplicate];
    const WHAT: &'static str = "status";
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Rejected => "rejected",
            Status::Duplicate => "duplicate",
        }
    }
}
crate::impl_named_str!(Status);

impl Status {
    /// `Ok` when accepted, else `Rejected`.
    pub fn ok_if(accepted: bool) -> Status {
        if accepted {
            Status::Ok
        } else {
            Status::Rejected
        }
    }
}

/// The `status` column of a manifest.
pub fn status_column(statuses: impl Iterator<Item = Status>) -> polars::prelude::Column {
    super::columns::col("status", statuses.map(Status::name).collect::<Vec<_>>())
}

/// Why a row is not accepted (every stage's reasons; the README lists which stage writes which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // Decoding (`imageio`).
    EmptyFile,
    TooLarge,
    NotAnImage,
    UnsupportedFormat,
    DecompressionBomb,
    Truncated,
    Corrupt,
    // Files and archives (`ingest`).
    Unreadable,
    SymlinkLoop,
    NotAFile,
    UnsafeArchivePath,
    ArchiveBudgetExceeded,
    CorruptArchive,
    // Duplicates (`dedup`).
    ExactBytes,
    ExactPixels,
    Near,
    // Faces (`crop`); `decode_failed` also in `upscale` and `pack`.
    DecodeFailed,
    NoFace,
    LowScore,
    FaceTooSmall,
    TooManyFaces,
    // Quality (`clean`).
    TooSmall,
    BadAspect,
    Blurry,
    Monochrome,
    LowEntropy,
}

impl Named for Reason {
    const ALL: &'static [Self] = &[
        Reason::EmptyFile,
        Reason::TooLarge,
        Reason::NotAnImage,
        Reason::UnsupportedFormat,
        Reason::DecompressionBomb,
        Reason::Truncated,
        Reason::Corrupt,
        Reason::Unreadable,
        Reason::SymlinkLoop,
        Reason::NotAFile,
        Reason::UnsafeArchivePath,
        Reason::ArchiveBudgetExceeded,
        Reason::CorruptArchive,
        Reason::ExactBytes,
        Reason::ExactPixels,
        Reason::Near,
        Reason::DecodeFailed,
        Reason::NoFace,
        Reason::LowScore,
        Reason::FaceTooSmall,
        Reason::TooManyFaces,
        Reason::TooSmall,
        Reason::BadAspect,
        Reason::Blurry,
        Reason::Monochrome,
        Reason::LowEntropy,
    ];
    const WHAT: &'static str = "reason";
    fn name(self) -> &'static str {
        match self {
            Reason::EmptyFile => "empty_file",
            Reason::TooLarge => "too_large",
            Reason::NotAnImage => "not_an_image",
            Reason::UnsupportedFormat => "unsupported_format",
            Reason::DecompressionBomb => "decompression_bomb",
            Reason::Truncated => "truncated",
            Reason::Corrupt => "corrupt",
            Reason::Unreadable => "unreadable",
            Reason::SymlinkLoop => "symlink_loop",
            Reason::NotAFile => "not_a_file",
            Reason::UnsafeArchivePath => "unsafe_archive_path",
            Reason::ArchiveBudgetExceeded => "archive_budget_exceeded",
            Reason::CorruptArchive => "corrupt_archive",
            Reason::ExactBytes => "exact_bytes",
            Reason::ExactPixels => "exact_pixels",
            Reason::Near => "near",
            Reason::DecodeFailed => "decode_failed",
            Reason::NoFace => "no_face",
            Reason::LowScore => "low_score",
            Reason::FaceTooSmall => "face_too_small",
            Reason::TooManyFaces => "too_many_faces",
            Reason::TooSmall => "too_small",
            Reason::BadAspect => "bad_aspect",
            Reason::Blurry => "blurry",
            Reason::Monochrome => "monochrome",
            Reason::LowEntropy => "low_entropy",
        }
    }
}
crate::impl_named_str!(Reason);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.name()), "{} twice", r.name());
            assert!(r.name().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(r.name().parse::<Reason>().unwrap(), *r);
            // serde writes the same string as the manifests.
            assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{}\"", r.name()));
        }
        for s in Status::ALL {
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.name()));
        }
    }
}
