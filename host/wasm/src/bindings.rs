//! Rust bindings of the `weir:stream` WIT contract, and the host side of
//! its imports.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "job-world",
    imports: { default: trappable },
});

pub(crate) use weir::stream::types as wit;
