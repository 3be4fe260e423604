//! The Ed25519 limit for `gateway/bench.sh`: CPU time (this process's utime + stime from
//! `/proc/self/stat`) per `verify_strict` of a 200-byte message, cycling through 60
//! distinct signatures as `benches/verify_limit.rs` does (a loop over one signature lets
//! the branch predictor learn it). Prints `limit_cpu_ns <n>`.
//!
//! ```text
//! cargo run --release -p aauth-gateway --example verify_limit -- [SECONDS]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey};

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // The command name may contain spaces: fields are counted after its closing paren.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let signed: Vec<([u8; 200], Signature)> = (0..60u8)
        .map(|i| {
            let mut message = [0x5a; 200];
            message[0] = i;
            let signature = key.sign(&message);
            (message, signature)
        })
        .collect();
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let before = cpu_ticks();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        for (message, signature) in &signed {
            black_box(public.verify_strict(black_box(message), signature).is_ok());
        }
        n += signed.len() as u64;
    }
    let cpu_ns = (cpu_ticks() - before) as f64 / ticks_per_second * 1e9;
    println!("limit_cpu_ns {:.0}", cpu_ns / n as f64);
    println!("limit_wall_ns {:.0}", started.elapsed().as_nanos() as f64 / n as f64);
}
