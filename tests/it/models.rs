//! `anime-pipe models` (lookup order, pins, signature checks), `models fetch` against a local HTTP mirror on
//! 127.0.0.1 (interrupted and resumed with Range, corrupted and refused, already installed), and the other
//! command-line conveniences: `--version`, `completions`, `man`.
use crate::support::{anime_pipe, shared_dir};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SMALL: &str = "waifu2x_upconv7_anime_scale2x.onnx";

/// How the mirror answers one request.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// The file (or the requested range of it).
    Serve,
    /// Announces the whole length, sends this many body bytes, then closes the connection.
    DropAfter(usize),
    /// The whole file with one byte flipped.
    Corrupt,
}

/// A tiny HTTP/1.1 file server on 127.0.0.1 serving `dir`: one connection per request (`Connection: close`), each
/// answered by the next queued [`Mode`] (then [`Mode::Serve`]). It records each request's Range header.
struct Mirror {
    url: String,
    modes: Arc<Mutex<VecDeque<Mode>>>,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl Mirror {
    fn start(dir: &Path) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/models", listener.local_addr().unwrap());
        let modes: Arc<Mutex<VecDeque<Mode>>> = Arc::default();
        let ranges: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let (dir, m, r) = (dir.to_path_buf(), modes.clone(), ranges.clone());
        // The thread ends with the test process (it only ever blocks in accept).
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mode = m.lock().unwrap().pop_front().unwrap_or(Mode::Serve);
                let _ = answer(stream, &dir, mode, &r);
            }
        });
        Mirror { url, modes, ranges }
    }

    fn queue(&self, mode: Mode) {
        self.modes.lock().unwrap().push_back(mode);
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.ranges.lock().unwrap().clone()
    }
}

fn answer(mut stream: TcpStream, dir: &Path, mode: Mode, ranges: &Mutex<Vec<Option<String>>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break; // the whole request head is read, so closing early sends FIN, not RST
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    ranges.lock().unwrap().push(range.clone());
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let name = path.rsplit('/').next().unwrap_or("");
    let Ok(mut body) = std::fs::read(dir.join(name)) else {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    if let Mode::Corrupt = mode {
        let middle = body.len() / 2;
        body[middle] ^= 0xff;
    }
    let total = body.len();
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    let head = if range.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\nConnection: close\r\n\r\n",
            total - start,
            total - 1
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n")
    };
    stream.write_all(head.as_bytes())?;
    let rest = &body[start..];
    match mode {
        Mode::DropAfter(n) => stream.write_all(&rest[..n.min(rest.len())])?,
        Mode::Serve | Mode::Corrupt => stream.write_all(rest)?,
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

fn shared_models() -> Option<PathBuf> {
    shared_dir().map(|s| s.join("models"))
}

/// `anime-pipe` isolated from the developer's own model directories.
fn cmd(home: &Path) -> std::process::Command {
    let mut c = anime_pipe();
    c.env_remove("ANIME_PIPE_MODELS").env("XDG_CACHE_HOME", home.join("xdg-cache")).env("HOME", home);
    c
}

fn run(c: &mut std::process::Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fetch_resumes_an_interrupted_download_with_a_range_request() {
    let Some(models) = shared_models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("models");
    let mirror = Mirror::start(&models);
    let cut = 1_000_000;
    mirror.queue(Mode::DropAfter(cut));
    let fetch = || {
        let mut c = cmd(tmp.path());
        c.args(["models", "fetch", "waifu2x_upconv7_anime_scale2x", "--from", &mirror.url, "--dir"]).arg(&dest);
        run(&mut c)
    };

    let (code, _, err) = fetch();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("interrupted after {cut} of 2212251 bytes")), "{err}");
    assert!(!dest.join(SMALL).exists(), "nothing installed after an interruption");
    let part = dest.join(format!(".{SMALL}.part"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut as u64, "the received bytes are kept");

    let (code, out, err) = fetch();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resumed at byte 1000000"), "{out}");
    assert_eq!(mirror.ranges(), [None, Some(format!("bytes={cut}-"))], "the re-run asks only for the rest");
    assert_eq!(std::fs::read(dest.join(SMALL)).unwrap(), std::fs::read(models.join(SMALL)).unwrap());
    assert!(!part.exists());

    // Installed with the pinned bytes: a third run downloads nothing.
    let (code, out, err) = fetch();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already installed"), "{out}");
    assert_eq!(mirror.ranges().len(), 2);
}

#[test]
fn fetch_refuses_a_corrupted_download_and_installs_nothing() {
    let Some(models) = shared_models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("models");
    let mirror = Mirror::start(&models);
    mirror.queue(Mode::Corrupt);
    let mut corrupted = std::fs::read(models.join(SMALL)).unwrap();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    let copy = tmp.path().join("corrupted");
    std::fs::write(&copy, &corrupted).unwrap();
    let bad_sha = anime_pipe::models::file_sha256(&copy).unwrap();
    let pin = anime_pipe::models::pin_named(SMALL).unwrap();

    let mut c = cmd(tmp.path());
    c.args(["models", "fetch", SMALL, "--from", &mirror.url, "--dir"]).arg(&dest);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sha256 mismatch") && err.contains(pin.sha256) && err.contains(&bad_sha), "{err}");
    let left: Vec<_> = std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "nothing installed, no part kept: {left:?}");
}

#[test]
fn models_lists_lookups_pins_and_signatures() {
    let Some(models) = shared_models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // From a folder mirror into $ANIME_PIPE_MODELS (the default --dir when it is set).
    let env_dir = tmp.path().join("env-models");
    let mut c = cmd(tmp.path());
    c.env("ANIME_PIPE_MODELS", &env_dir).args(["models", "fetch", "face_detector", "--from"]).arg(&models);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(env_dir.join("anime_faceboxes.onnx").is_file());

    // A config in a folder with no ../shared beside it: only $ANIME_PIPE_MODELS has a model.
    let project = tmp.path().join("a/project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("pipeline.yaml"), "models: {}\n").unwrap();
    let mut c = cmd(tmp.path());
    c.env("ANIME_PIPE_MODELS", &env_dir).current_dir(&project).args(["--json", "models"]);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let by_key = |k: &str| v["models"].as_array().unwrap().iter().find(|m| m["key"] == k).unwrap().clone();
    let fd = by_key("face_detector");
    assert_eq!((fd["verdict"].as_str(), fd["lookup"]["found"].as_str()), (Some("ok"), Some("env")), "{fd}");
    assert_eq!(fd["pinned_as"], "anime_faceboxes.onnx");
    assert_eq!(fd["signature"]["outputs"][0]["name"], "loc");
    let origins: Vec<&str> =
        fd["lookup"]["candidates"].as_array().unwrap().iter().map(|c| c[0].as_str().unwrap()).collect();
    assert_eq!(origins, ["env", "user", "dev"]);
    let fid = by_key("fid_inception");
    assert_eq!(fid["verdict"], "missing", "{fid}");

    // The human listing says where to get a missing model.
    let mut c = cmd(tmp.path());
    c.env("ANIME_PIPE_MODELS", &env_dir).current_dir(&project).arg("models");
    let (_, out, _) = run(&mut c);
    assert!(out.contains("models fetch fid_inception_v3_pool3.onnx"), "{out}");

    // A configured path is authoritative; a model that does not fit its stage is BAD (exit 2).
    std::fs::write(
        project.join("pipeline.yaml"),
        format!("models: {{face_detector: {}}}\n", models.join(SMALL).display()),
    )
    .unwrap();
    let mut c = cmd(tmp.path());
    c.env("ANIME_PIPE_MODELS", &env_dir).current_dir(&project).args(["--json", "models"]);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 2, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let fd = v["models"][0].clone();
    assert_eq!((fd["verdict"].as_str(), fd["lookup"]["found"].as_str()), (Some("bad"), Some("config")));
    assert!(fd["problems"].to_string().contains("missing output \\\"loc\\\""), "{fd}");
    assert!(err.contains("unusable model(s): face_detector"), "{err}");
}

#[test]
fn version_names_the_onnx_runtime_it_loads_or_says_not_found() {
    let (code, out, err) = run(anime_pipe().arg("--version").env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("anime-pipe {}\n", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains("ONNX Runtime: not found") && out.contains("scripts/install-ort.sh"), "{out}");
    let (code, out, err) = run(anime_pipe().arg("--version"));
    assert_eq!(code, 0, "{err}");
    if anime_pipe::runtime::find_library().is_some_and(|p| p.is_file()) {
        assert!(out.contains(&format!("ONNX Runtime: {} (", anime_pipe::runtime::ORT_VERSION)), "{out}");
    }
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(anime_pipe().args(["completions", shell]));
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("anime-pipe") && out.contains("fetch") && out.contains("config"), "{shell}");
    }
    let (code, out, _) = run(anime_pipe().arg("man"));
    assert_eq!(code, 0);
    assert!(out.contains(".TH anime-pipe 1") && out.contains("models"), "{out}");
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = run(anime_pipe().arg("man").arg("--dir").arg(tmp.path()));
    assert_eq!(code, 0, "{err}");
    for page in ["anime-pipe.1", "anime-pipe-train.1", "anime-pipe-models-fetch.1"] {
        assert!(tmp.path().join(page).is_file(), "{page}");
    }
}
