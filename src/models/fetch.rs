//! `anime-pipe models fetch`: the pinned model files from a mirror (an http(s) URL prefix or a folder) into a
//! model directory. A download goes to `<dir>/.<file>.part`; a re-run after an interruption resumes it with an
//! HTTP Range request; the part is checked against the pin's sha256 and only then renamed onto `<dir>/<file>`
//! (atomic: a model path never holds unverified bytes). A mismatch deletes the part and names both hashes.
use super::{file_sha256, pin_named, Pin, Role, PINS};
use crate::report::Summary;
use anyhow::{anyhow, bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What to fetch, from where, into where.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Pinned file names (with or without `.onnx`) or `models:` keys (their default file); empty: every pinned file.
    pub names: Vec<String>,
    /// `http://host/prefix` / `https://...` (the file name is appended) or a folder holding the files.
    pub from: String,
    /// The model directory to install into.
    pub dir: PathBuf,
}

/// The default model directory of `fetch`: `$ANIME_PIPE_MODELS`, else the per-user model directory.
pub fn default_dir() -> Result<PathBuf> {
    std::env::var_os(super::MODELS_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(super::user_model_dir)
        .ok_or_else(|| anyhow!("no model directory: set $ANIME_PIPE_MODELS or $HOME, or pass --dir DIR"))
}

/// The pins `names` select.
pub fn select(names: &[String]) -> Result<Vec<&'static Pin>> {
    if names.is_empty() {
        return Ok(PINS.iter().collect());
    }
    let mut pins: Vec<&'static Pin> = Vec::new();
    for name in names {
        let by_key = Role::ALL.iter().find(|r| r.key() == name).and_then(|r| pin_named(r.default_file()));
        let pin = by_key.or_else(|| pin_named(name)).ok_or_else(|| {
            let files: Vec<&str> = PINS.iter().map(|p| p.file).collect();
            let keys: Vec<&str> = Role::ALL.iter().map(|r| r.key()).collect();
            anyhow!(
                "unknown model {name:?}: expected one of {} or a models: key ({})",
                files.join(", "),
                keys.join(", ")
            )
        })?;
        if !pins.iter().any(|p| p.file == pin.file) {
            pins.push(pin);
        }
    }
    Ok(pins)
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already installed with the pinned bytes.
    Present,
    /// Downloaded (or copied) and installed; `resumed_from` > 0 when a partial download was continued.
    Installed { resumed_from: u64 },
}

pub fn run(request: &FetchRequest) -> Result<Summary> {
    let pins = select(&request.names)?;
    std::fs::create_dir_all(&request.dir)
        .with_context(|| format!("cannot create the model directory {}", request.dir.display()))?;
    let mut summary = Summary::start("models fetch");
    let (mut installed, mut present) = (0, 0);
    for pin in pins {
        match fetch_one(pin, &request.from, &request.dir)? {
            Outcome::Present => {
                present += 1;
                summary.fact(pin.file, "already installed (sha256 ok)");
            }
            Outcome::Installed { resumed_from } => {
                installed += 1;
                let how = if resumed_from > 0 { format!(", resumed at byte {resumed_from}") } else { String::new() };
                summary.fact(pin.file, format!("installed ({} bytes, sha256 ok{how})", pin.bytes));
            }
        }
    }
    summary.count("installed", installed).count("already present", present);
    summary.fact("model dir", request.dir.display());
    Ok(summary.finish())
}

/// Fetches one pinned file into `dir` (see the module doc).
pub fn fetch_one(pin: &Pin, from: &str, dir: &Path) -> Result<Outcome> {
    let dest = dir.join(pin.file);
    if dest.is_file() && file_sha256(&dest).ok().as_deref() == Some(pin.sha256) {
        return Ok(Outcome::Present);
    }
    let part = dir.join(format!(".{}.part", pin.file));
    let is_url = from.starts_with("http://") || from.starts_with("https://");
    if from.starts_with("https://") && !cfg!(feature = "https") {
        bail!("--from {from}: this anime-pipe was built without TLS; rebuild with `cargo build --release --features https`, or use an http:// mirror or a folder");
    }
    let resumed_from = if is_url {
        download(pin, &format!("{}/{}", from.trim_end_matches('/'), pin.file), &part)?
    } else {
        let src = Path::new(from).join(pin.file);
        std::fs::copy(&src, &part).with_context(|| format!("cannot copy {} to {}", src.display(), part.display()))?;
        0
    };
    let actual = file_sha256(&part).with_context(|| format!("cannot read {}", part.display()))?;
    if actual != pin.sha256 {
        let _ = std::fs::remove_file(&part);
        bail!(
            "{}: sha256 mismatch: expected {}, got {actual} (from {from}); nothing was installed",
            pin.file,
            pin.sha256
        );
    }
    File::open(&part).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", part.display()))?;
    std::fs::rename(&part, &dest).with_context(|| format!("cannot move {} to {}", part.display(), dest.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Outcome::Installed { resumed_from })
}

/// Downloads `url` into `part`, continuing a partial file with a Range request. Returns the offset it resumed at.
fn download(pin: &Pin, url: &str, part: &Path) -> Result<u64> {
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > pin.bytes {
        have = 0; // longer than the pinned file: not a prefix of it
    }
    if have == pin.bytes {
        return Ok(have); // complete: only the hash check is left
    }
    let mut request = ureq::get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| anyhow!("cannot download {url}: {e}"))?;
    let status = response.status().as_u16();
    let start = match status {
        206 => {
            let range = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            let start = content_range_start(range)
                .ok_or_else(|| anyhow!("{url}: 206 Partial Content without a usable Content-Range ({range:?})"))?;
            if start != have {
                bail!("{url}: asked for bytes from {have}, the server sent from {start}");
            }
            have
        }
        200 => 0, // the server ignored Range (or none was sent): start over
        other => bail!("cannot download {url}: HTTP {other}"),
    };
    let mut file = if start == 0 { File::create(part) } else { OpenOptions::new().append(true).open(part) }
        .with_context(|| format!("cannot write {}", part.display()))?;
    let mut body = response.into_body().into_reader();
    let mut written = start;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.flush()?;
                bail!(
                    "download of {} interrupted after {written} of {} bytes ({e}); the part is kept in {}: run the \
                     same command again to resume",
                    pin.file,
                    pin.bytes,
                    part.display()
                );
            }
        };
        file.write_all(&buf[..n]).with_context(|| format!("cannot write {}", part.display()))?;
        written += n as u64;
        if written > pin.bytes {
            break; // more than the pinned size: the hash check refuses it
        }
    }
    file.flush()?;
    if written < pin.bytes {
        bail!(
            "download of {} ended after {written} of {} bytes; the part is kept in {}: run the same command again \
             to resume",
            pin.file,
            pin.bytes,
            part.display()
        );
    }
    Ok(start)
}

/// The first byte of `bytes START-END/TOTAL`.
fn content_range_start(value: &str) -> Option<u64> {
    value.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_by_file_stem_or_key_and_rejects_unknown_names() {
        let names = |v: &[&str]| select(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(names(&[]).unwrap().len(), PINS.len());
        let picked = names(&["face_detector", "anime_faceboxes.onnx", "realesr_animevideov3_x4"]).unwrap();
        let files: Vec<&str> = picked.iter().map(|p| p.file).collect();
        assert_eq!(files, ["anime_faceboxes.onnx", "realesr_animevideov3_x4.onnx"]);
        let err = names(&["yolo"]).unwrap_err().to_string();
        assert!(err.contains("unknown model \"yolo\"") && err.contains("fid_inception"), "{err}");
    }

    #[test]
    fn parses_content_range() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
    }
}
