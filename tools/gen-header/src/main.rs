//! Generates `include/vcsdk.h` from the `ffi` crate with cbindgen (`ffi/cbindgen.toml`).
//! `gen-header --check` generates into memory and fails when the checked-in header differs.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("gen-header: unknown argument {other:?} (usage: gen-header [--check])");
            return ExitCode::from(2);
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let crate_dir = root.join("ffi");
    let header = root.join("include/vcsdk.h");
    let config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gen-header: ffi/cbindgen.toml: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gen-header: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    if check {
        let current = std::fs::read(&header).unwrap_or_default();
        if current != fresh {
            eprintln!(
                "gen-header: include/vcsdk.h is not what the ffi crate generates; run `cargo run -p gen-header`"
            );
            return ExitCode::FAILURE;
        }
        println!("include/vcsdk.h is up to date");
    } else {
        if let Err(e) = std::fs::write(&header, &fresh) {
            eprintln!("gen-header: writing {}: {e}", header.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", header.display());
    }
    ExitCode::SUCCESS
}
