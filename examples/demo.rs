//! The seed article's user-consent flow, end to end, on loopback:
//!
//! ```text
//! cargo run --example demo                 # the person approves (through the consent page)
//! cargo run --example demo -- --interactive  # you approve in your browser
//! cargo run --example demo -- --deny       # the person denies: 403 denied
//! cargo run --example demo -- --expire     # nobody answers: 408 expired
//! ```
//!
//! Exits 0 only if every step behaved as the protocol says.

use std::process::ExitCode;
use std::sync::Arc;

use tower_aauth::testing::demo::{self, DemoOptions, PersonAction};

const USAGE: &str = "usage: demo [--interactive | --deny | --expire]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut person = PersonAction::Approve;
    for arg in std::env::args().skip(1) {
        person = match arg.as_str() {
            "--interactive" => PersonAction::Interactive,
            "--deny" => PersonAction::Deny,
            "--expire" => PersonAction::Ignore,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
    }
    let print: demo::Printer = Arc::new(|text: &str| print!("{text}"));
    match demo::run(DemoOptions::for_person(person), print).await {
        Ok(report) if report.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}
