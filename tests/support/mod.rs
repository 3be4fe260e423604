//! The integration tests' shared support, in one place. Each `tests/*.rs` binary declares
//! `mod support;` and uses the parts it needs:
//!
//! * [`fixtures`]: the identifiers, keys and requests every harness shares;
//! * [`harness`]: a resource behind the layer whose handler counts its calls, and the
//!   refusal assertions;
//! * [`attack`]: the attack tests' harness (a counting key resolver, [`attack::Attack`]);
//! * [`app`]: an application with one guarded route per requirement, and the tokens of the
//!   three- and four-party postures;
//! * [`discovery`]: discovery test doubles (a loopback issuer, an in-memory fetcher, mocks);
//! * [`metrics`]: a debugging recorder local to a test's futures, and what it counted;
//! * [`peers`]: the real third-party peers of `tests/interop`;
//! * [`bot_peers`]: the real Web Bot Auth peers (the `web-bot-auth` crate in process, the npm and
//!   PyPI drivers of `tests/interop`);
//! * [`policy`]: the policy attacks' world (attackers' issuers, a `whoami` router);
//! * [`redis`]: a `redis-server` child process;
//! * [`fleet`]: `resource_server` replicas behind a real `haproxy`;
//! * [`browser`]: a headless Chromium driven over WebDriver.
//! * [`session`]: session-guarded routes, an interaction page and the agent's side of resource-managed access.
//!
//! A test that needs a peer outside Cargo (`redis-server`, a `tests/interop` peer) carries
//! `#[cfg_attr(skip_…, ignore = "…")]`: `build.rs` sets the cfg when the peer is absent, so
//! the test is reported ignored with the reason; under `CI=true` it never sets it, and the
//! test fails when the peer is missing.

// Every test binary compiles this whole module and uses a different part of it (the
// attack tests `attack`, the interop tests `peers` and `app`, …): what one binary leaves
// unused (a helper, or a re-export of `fixtures` from the harness it does not use) is not
// dead code. Nothing else in tests/ allows dead code.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod attack;
pub mod bot_peers;
pub mod bots;
pub mod browser;
pub mod discovery;
pub mod fixtures;
pub mod fleet;
pub mod harness;
pub mod metrics;
pub mod peers;
pub mod policy;
pub mod redis;
pub mod session;
