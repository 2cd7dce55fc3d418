//! `uniffi-bindgen` at the UniFFI version libvcsdk is built with; scripts/gen-bindings.sh runs it.
#![forbid(unsafe_code)]

fn main() {
    uniffi::uniffi_bindgen_main()
}
