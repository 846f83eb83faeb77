use std::{env, fs, path::PathBuf};

use aya_build::{Package, Toolchain};

/// Builds the kernel program and leaves it in `OUT_DIR/auditor` for
/// `include_bytes_aligned!`; the kernel benchmark's do-nothing baseline,
/// which the daemon never loads, lands beside it in `OUT_DIR/baseline`.
/// With `AYA_BUILD_SKIP=1` (for tools that only type-check) an empty object
/// is written instead; the daemon refuses to run with it.
fn main() -> anyhow::Result<()> {
    let object = PathBuf::from(env::var("OUT_DIR")?).join("auditor");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(&object, [])?;
    }
    aya_build::build_ebpf(
        [Package {
            name: "auditor-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../auditor-ebpf"),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
