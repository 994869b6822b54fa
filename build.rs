//! Warns when jisr is built with `panic = "abort"` through RUSTFLAGS (`-C panic=abort`).
//!
//! Cargo gives build scripts the strategy chosen by RUSTFLAGS only; a profile's
//! `panic = "abort"` is caught by a compiler warning in `src/abi/panic_mode.rs`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_PANIC").as_deref() == Ok("abort") {
        println!(
            "cargo:warning=jisr is built with panic = \"abort\": a panicking handler will abort \
             Envoy instead of answering 500; build with panic = \"unwind\""
        );
    }
}
