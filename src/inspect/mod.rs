//! Looking at a workdir without changing it: `stats` (what each manifest holds), `verify` (cache objects and shards
//! against their checksums) and the contact sheet of face crops. Beside the stages, not among them: they produce
//! no manifest.
pub mod contact_sheet;
pub mod stats;
pub mod verify;
