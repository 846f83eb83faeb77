//! The do-nothing TC program of `auditor-ebpf/src/bin/baseline.rs` (it only
//! returns `TC_ACT_UNSPEC`), attached at the daemon's hooks in the proxy
//! namespace: what any program there costs before it does anything, the
//! floor the kernel and overhead benchmarks set the daemon's figures beside.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use aya::programs::{SchedClassifier, TcAttachType};
use lab::ProxyLab;

use super::Context;

/// The program's name, and the file the daemon's build leaves it in (beside
/// the daemon's own object).
pub const EMPTY_PROGRAM: &str = "empty_program";
const EMPTY_PROGRAM_OBJECT: &str = "baseline";

/// The empty program's object, which building the daemon left in its build
/// script's output directory; cargo names that directory in its messages.
pub fn object(context: &Context) -> Result<PathBuf> {
    let output = crate::cargo(&context.root)
        .args([
            "build",
            "--release",
            "--package",
            "auditor",
            "--message-format=json",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("cargo build --release --package auditor failed");
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "build-script-executed" {
            continue;
        }
        if let Some(out_dir) = message["out_dir"].as_str() {
            let object = Path::new(out_dir).join(EMPTY_PROGRAM_OBJECT);
            if object.metadata().is_ok_and(|m| m.len() > 0) {
                return Ok(object);
            }
        }
    }
    bail!("building the daemon left no {EMPTY_PROGRAM_OBJECT} object (was AYA_BUILD_SKIP set?)")
}

/// The empty program, attached in the proxy namespace at the daemon's hooks
/// (ingress and egress of nginx's two legs) until dropped: loaded once per
/// direction, so that each has its own statistics.
pub struct EmptyProgram {
    pub ingress: aya::Ebpf,
    pub egress: aya::Ebpf,
}

impl EmptyProgram {
    pub fn attach(lab: &ProxyLab, object: &Path) -> Result<EmptyProgram> {
        let object = object.to_owned();
        lab.proxy.run(move || {
            let load = |hook| -> Result<aya::Ebpf> {
                let mut ebpf = aya::Ebpf::load_file(&object)
                    .with_context(|| format!("cannot load {}", object.display()))?;
                let program: &mut SchedClassifier = ebpf
                    .program_mut(EMPTY_PROGRAM)
                    .with_context(|| format!("{} has no {EMPTY_PROGRAM}", object.display()))?
                    .try_into()?;
                program.load()?;
                for interface in [ProxyLab::PROXY_CLIENT_IF, ProxyLab::PROXY_BACKEND_IF] {
                    program
                        .attach(interface, hook)
                        .with_context(|| format!("cannot attach {EMPTY_PROGRAM} to {interface}"))?;
                }
                Ok(ebpf)
            };
            Ok(EmptyProgram {
                ingress: load(TcAttachType::Ingress)?,
                egress: load(TcAttachType::Egress)?,
            })
        })
    }
}
