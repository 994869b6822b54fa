//! Instructions per request of each request lifecycle, jisr against the raw callback filter,
//! counted by callgrind: a measure that CPU steal and frequency changes on a shared machine do
//! not move. The lifecycles are the ones `lifecycle.rs` times (`lifecycle_cases`).
//!
//! `scripts/instructions.sh` builds this bench and runs it under
//! `valgrind --tool=callgrind --toggle-collect=jisr_instructions_measured`, so that only the
//! requests inside [`jisr_instructions_measured`] are counted, and prints the table.
//!
//! Command lines:
//! - `instructions list`: one line per lifecycle, `key<TAB>name<TAB>time goal` (the key is the
//!   jisr filter's name);
//! - `instructions run KEY jisr|raw N`: sets up the filter and one session, drives a warm-up of
//!   requests, then N requests of that lifecycle inside the measured function;
//! - anything else (as `cargo bench` runs it): drives every lifecycle natively for a moment, to
//!   check that each still does what it should, and says how to get the numbers.

mod lifecycle_cases;

use jisr::testing::bench::{BenchFilter, BenchSession};
use lifecycle_cases::{CASES, Case, register};
use std::hint::black_box;
use std::process::ExitCode;

/// Requests driven before measuring: the first ones fill pools and lazy state.
const WARM_UP: u32 = 100;

/// Drives `n` requests of one lifecycle. Callgrind counts only what runs inside this function
/// (its unmangled name is what `--toggle-collect` names).
#[unsafe(no_mangle)]
#[inline(never)]
pub fn jisr_instructions_measured(
    s: &mut BenchSession<'_>,
    run: fn(&mut BenchSession<'_>),
    n: u32,
) {
    for _ in 0..n {
        run(black_box(&mut *s));
    }
}

fn find(key: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.jisr == key)
}

fn run(key: &str, variant: &str, n: &str) -> Result<(), String> {
    let case = find(key).ok_or_else(|| format!("no lifecycle {key:?}"))?;
    let filter = match variant {
        "jisr" => case.jisr,
        "raw" => case.raw,
        _ => return Err(format!("variant {variant:?}: expected jisr or raw")),
    };
    let n: u32 = n.parse().map_err(|e| format!("request count {n:?}: {e}"))?;
    let f = BenchFilter::new(register, filter, b"")?;
    let mut s = f.session();
    for _ in 0..WARM_UP {
        (case.run)(&mut s);
    }
    jisr_instructions_measured(&mut s, case.run, black_box(n));
    Ok(())
}

/// Runs every lifecycle natively (no valgrind): the lifecycles assert what they expect.
fn smoke() -> Result<(), String> {
    for case in CASES {
        for filter in [case.jisr, case.raw] {
            let f = BenchFilter::new(register, filter, b"")?;
            let mut s = f.session();
            jisr_instructions_measured(&mut s, case.run, 1_000);
        }
    }
    println!(
        "instructions: {} lifecycles ran natively, jisr and raw; for instructions per request, \
         run scripts/instructions.sh",
        CASES.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["list"] => {
            for c in CASES {
                println!("{}\t{}\t{:.2}", c.jisr, c.name, c.goal);
            }
            Ok(())
        }
        ["run", key, variant, n] => run(key, variant, n),
        _ => smoke(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("instructions: {e}");
            ExitCode::FAILURE
        }
    }
}
