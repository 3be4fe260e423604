//! The seed article's user-consent flow, end to end, on loopback:
//!
//! ```text
//! cargo run --example demo                 # the person approves (through the consent page)
//! cargo run --example demo -- --interactive  # you approve in your browser
//! cargo run --example demo -- --deny       # the person denies: 403 denied
//! cargo run --example demo -- --expire     # nobody answers: 408 expired
//! cargo run --example demo -- --profile legacy  # the seed article's own wire generation
//! cargo run --example demo -- --budget     # a metered route runs out of budget; the agent steps up
//! cargo run --example demo -- --mode resource-managed  # two parties: the resource's own consent
//!                                          # page, a session token, revocation, the next request refused
//! cargo run --example demo -- --mode resource-managed --person deny  # the person denies there
//! ```
//!
//! Every run starts with an `hwk`-signed `GET /whoami` (identity level), then the
//! user-consent flow for `/data` with an agent signing under `jwks_uri`; the consent run
//! ends with a bot from the open web: a Web Bot Auth signature on `GET /crawl`, verified
//! against the bot's key directory and named as a bot, never as an agent.
//!
//! Exits 0 only if every step behaved as the protocol says.

use std::process::ExitCode;
use std::sync::Arc;

use tower_aauth::Generation;
use tower_aauth::testing::demo::{self, DemoOptions, PersonAction};

const USAGE: &str = "usage: demo [--interactive | --deny | --expire | --person approve|deny|expire|interactive] \
                     [--budget | --mode consent|budget|resource-managed] [--profile draft-11|legacy]";

/// Which flow runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Consent,
    Budget,
    ResourceManaged,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut person = PersonAction::Approve;
    let mut generation = Generation::Draft11;
    let mut mode = Mode::Consent;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        person = match arg.as_str() {
            "--interactive" => PersonAction::Interactive,
            "--deny" => PersonAction::Deny,
            "--expire" => PersonAction::Ignore,
            "--budget" => {
                mode = Mode::Budget;
                continue;
            }
            "--mode" => {
                mode = match args.next().as_deref() {
                    Some("consent") => Mode::Consent,
                    Some("budget") => Mode::Budget,
                    Some("resource-managed") => Mode::ResourceManaged,
                    _ => {
                        eprintln!("--mode takes consent, budget or resource-managed\n{USAGE}");
                        return ExitCode::from(2);
                    }
                };
                continue;
            }
            "--person" => match args.next().as_deref() {
                Some("approve") => PersonAction::Approve,
                Some("deny") => PersonAction::Deny,
                Some("expire") => PersonAction::Ignore,
                Some("interactive") => PersonAction::Interactive,
                _ => {
                    eprintln!("--person takes approve, deny, expire or interactive\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
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
    if mode == Mode::ResourceManaged && generation == Generation::Legacy {
        eprintln!("resource-managed access is new in draft -11: --mode resource-managed takes no --profile legacy");
        return ExitCode::from(2);
    }
    let print: demo::Printer = Arc::new(|text: &str| print!("{text}"));
    let options = DemoOptions {
        generation,
        ..DemoOptions::for_person(person)
    };
    let report = match mode {
        Mode::Consent => demo::run(options, print).await,
        Mode::Budget => demo::run_budget(options, print).await,
        Mode::ResourceManaged => demo::run_resource_managed(options, print).await,
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
