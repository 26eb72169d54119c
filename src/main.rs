//! The `litevault` command: parses arguments, calls the library, prints.
//!
//! Errors are printed as one line, `litevault: error: ...`, and mapped to the
//! stable exit codes documented in README.md ("Exit codes"). A closed stdout
//! (`litevault key list | head -1`) is not an error.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if cli::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let code = cli::exit_code_of(&err);
            if cli::is_reported(&err) {
                return ExitCode::from(code);
            }
            eprintln!("litevault: error: {}", cli::message_of(&err));
            ExitCode::from(code)
        }
    }
}
