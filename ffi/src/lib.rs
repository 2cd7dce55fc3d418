//! The C ABI of vcsdk. The exported `vc_*` functions arrive with the C ABI work; this crate already
//! builds `libvcsdk` so that packaging and linking can be exercised.

/// The version of this library, as "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    vcsdk::VERSION
}
