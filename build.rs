//! Link settings of release builds of the binary, where rustc links with its lld:
//! - The functions the gateway runs are placed next to each other (`--symbol-ordering-file`
//!   with bench/symbol-order.txt, made by `BENCH_PROFILE=1 BENCH_PROFILE_TOOL=symbols
//!   bench/run`). Fat LTO scatters the ~4,100 functions a start and the request path run
//!   among ~19,000, so nearly every page of code became resident (12.5 of 14.8 MiB at
//!   c=256); grouped, 6.2 MiB. A stale list costs only pages: renamed symbols are skipped.
//! - Relative relocations are packed (DT_RELR).
use std::{env, path::Path};

const SYMBOL_ORDER: &str = "bench/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={SYMBOL_ORDER}");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    // rustc links this target with its own lld since Rust 1.90; the system's linker (GNU ld)
    // lacks the ordering flag. A linker chosen by hand (-C linker) must be lld as well.
    let linked_by_lld = env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && version_check::is_min_version("1.90.0").unwrap_or(false);
    if !(release && linked_by_lld) {
        return;
    }
    let bin = "cargo:rustc-link-arg-bin=partner-gateway";
    // The ~35,000 relative relocations of a position-independent binary, in compact form
    // (glibc 2.36+: Debian 12, as the image): the loader reads 14 KiB at start instead of
    // 822 KiB, which stayed resident.
    println!("{bin}=-Wl,-z,pack-relative-relocs");
    let list =
        Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join(SYMBOL_ORDER);
    if !list.is_file() {
        println!(
            "cargo:warning={SYMBOL_ORDER} is missing: the code is linked in the default order"
        );
        return;
    }
    println!("{bin}=-Wl,--symbol-ordering-file={}", list.display());
    println!("{bin}=-Wl,--no-warn-symbol-ordering");
}
