//! Looking at a workdir without changing it: `stats` (what each manifest holds), `verify` (cache objects and shards
//! against their checksums) and the contact sheet of face crops. Beside the stages, not among them: they produce
//! no manifest. `lock` (pipeline.lock) and `diff` (rows two manifests disagree on) compare workdirs.
pub mod contact_sheet;
pub mod diff;
pub mod lock;
pub mod stats;
pub mod verify;
