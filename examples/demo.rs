//! The seed article's user-consent flow, end to end, on loopback:
//!
//! ```text
//! cargo run --example demo                 # the person approves (through the consent page)
//! cargo run --example demo -- --interactive  # you approve in your browser
//! cargo run --example demo -- --deny       # the person denies: 403 denied
//! cargo run --example demo -- --expire     # nobody answers: 408 expired
//! cargo run --example demo -- --profile legacy  # the seed article's own wire generation
//! cargo run --example demo -- --budget     # a metered route runs out of budget; the agent steps up
//! ```
//!
//! Every run starts with an `hwk`-signed `GET /whoami` (identity level), then the
//! user-consent flow for `/data` with an agent signing under `jwks_uri`.
//!
//! Exits 0 only if every step behaved as the protocol says.

use std::process::ExitCode;
use std::sync::Arc;

use tower_aauth::Generation;
use tower_aauth::testing::demo::{self, DemoOptions, PersonAction};

const USAGE: &str = "usage: demo [--interactive | --deny | --expire | --budget] [--profile draft-11|legacy]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut person = PersonAction::Approve;
    let mut generation = Generation::Draft11;
    let mut budget = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        person = match arg.as_str() {
            "--interactive" => PersonAction::Interactive,
            "--deny" => PersonAction::Deny,
            "--expire" => PersonAction::Ignore,
            "--budget" => {
                budget = true;
                continue;
            }
            "--profile" => {
                generation = match args.next().as_deref() {
                    Some("draft-11") => Generation::Draft11,
                    Some("legacy") => Generation::Legacy,
                    _ => {
                        eprintln!("--profile takes draft-11 or legacy\n{USAGE}");
                        return ExitCode::from(2);
                    }
                };
                continue;
            }
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
    let options = DemoOptions {
        generation,
        ..DemoOptions::for_person(person)
    };
    let report = match budget {
        true => demo::run_budget(options, print).await,
        false => demo::run(options, print).await,
    };
    match report {
        Ok(report) if report.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}
