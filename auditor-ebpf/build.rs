use which::which;

/// Rebuilds the object when bpf-linker changes: cargo does not track the linker.
fn main() {
    let bpf_linker =
        which("bpf-linker").expect("bpf-linker not found on PATH; run `cargo xtask build`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
