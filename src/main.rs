//! The `anime-pipe` binary: parse the command line, hand over to the library, map errors to exit codes
//! (2: an error, 3: differs from pipeline.lock / `diff` found differences, 130: a clean stop on Ctrl-C).
use clap::Parser;

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
    let cli = match anime_pipe::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // `--version` also says which ONNX Runtime would be loaded (found lazily: only for this flag).
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            print!("{}", anime_pipe::commands::version_text());
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => e.exit(),
    };
    match anime_pipe::commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if err.is::<anime_pipe::commands::Interrupted>() => std::process::ExitCode::from(130),
        // Already explained on stderr (`run --locked`) or stdout (`diff`).
        Err(err) if err.is::<anime_pipe::commands::Differs>() => std::process::ExitCode::from(3),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Rust ignores SIGPIPE, so `anime-pipe stats | head` would panic in `println!` once `head` exits. Restoring the
/// default makes the process end quietly instead, like other Unix command-line tools.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
