//! libvcsdk: the C ABI of vcsdk, and (module [`bindings`]) its UniFFI exports for Kotlin, Swift
//! and Python. Every entry point is `vc_*`, returns a [`vc_result`] (or a value
//! documented otherwise), runs behind a panic boundary, and checks its pointers. The header
//! `include/vcsdk.h` is generated from this crate (`cargo run -p gen-header`).
//!
//! `unsafe` lives here only: turning C pointers into Rust references, after checking them.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod bindings;
mod client;
mod conference;
mod events;
#[cfg(test)]
mod header_check;
mod identity;
mod media;
mod result;
mod runtime;
mod sframe;

pub use client::*;
pub use conference::*;
pub use events::*;
pub use identity::*;
pub use media::*;
pub use result::*;
pub use runtime::vc_library_shutdown;
pub use sframe::*;

uniffi::setup_scaffolding!("vcsdk");

/// The SDK version, "MAJOR.MINOR.PATCH", as a static NUL-terminated string (never freed).
#[no_mangle]
pub extern "C" fn vc_version() -> *const std::ffi::c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}
