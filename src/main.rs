//! The `anime-pipe` binary: parse the command line, hand over to the library, map errors to exit codes.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = anime_pipe::cli::Cli::parse();
    match anime_pipe::app::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
