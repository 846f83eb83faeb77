//! Installs what building and testing need, when it is missing: the
//! nightly's `rust-src`, bpf-linker built against the nightly's own LLVM,
//! and the Debian packages the integration tests start, the reverse proxies
//! of the proxy lab among them.

use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::run;

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Commands the integration tests run, and the Debian package of each; an
/// absolute path names a file of a package that provides no command.
const TEST_COMMANDS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("curl", "curl"),
    ("setpriv", "util-linux"),
    ("caddy", "caddy"),
    ("nginx", "nginx-light"),
    ("haproxy", "haproxy"),
    (
        "/usr/lib/python3/dist-packages/websockets/__init__.py",
        "python3-websockets",
    ),
    ("nghttpd", "nghttp2-server"),
    ("nghttpx", "nghttp2-proxy"),
    ("systemd-analyze", "systemd"),
    ("rsyslogd", "rsyslog"),
];

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn ensure_ebpf_toolchain() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("the nightly toolchain is needed to build the eBPF program")?;
    if !installed.lines().any(|line| line.starts_with("rust-src")) {
        eprintln!("xtask: installing rust-src for the nightly toolchain");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    if matches!(&linker, Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION))
    {
        return Ok(());
    }
    install_bpf_linker()
}

/// Builds bpf-linker against the nightly's shared LLVM, so no system LLVM of
/// the same major version is needed.
fn install_bpf_linker() -> Result<()> {
    let sysroot = output(nightly("rustc").args(["--print", "sysroot"]))?;
    let sysroot = sysroot.trim();
    let verbose_version = output(nightly("rustc").arg("-vV"))?;
    let llvm_major = verbose_version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|version| version.split('.').next())
        .context("the nightly's `rustc -vV` names no LLVM version")?;
    let lib_dir = format!("{sysroot}/lib");
    let llvm_lib = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot read {lib_dir}"))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libLLVM") && n.contains("-rust-") && n.ends_with(".so")
            })
        })
        .with_context(|| format!("no libLLVM-*-rust-*.so in {lib_dir}"))?;
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm_major} (about a minute)");
    run(nightly("cargo")
        .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major},no-llvm-linking"),
        ])
        .env(
            "RUSTFLAGS",
            format!(
                "-C link-arg=-Wl,-rpath,{lib_dir} -C link-arg={}",
                llvm_lib.display()
            ),
        ))
}

/// `tool` from the nightly toolchain, whichever toolchain runs xtask.
pub fn nightly(tool: &str) -> Command {
    let mut command = Command::new("rustup");
    command.args(["run", "nightly", tool]);
    // Set by the stable cargo that runs xtask; they would pin its tools.
    for variable in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        command.env_remove(variable);
    }
    command
}

pub fn ensure_test_packages() -> Result<()> {
    ensure_packages(TEST_COMMANDS)
}

/// Installs the Debian package of each of `commands` (command, package)
/// that is missing, without questions: debconf takes its defaults (for
/// tshark's wireshark-common: no capturing as non-root).
pub fn ensure_packages(commands: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = commands
        .iter()
        .filter(|(command, _)| !is_installed(command))
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update"))?;
    // The tests start the proxies themselves, in their namespaces: on a host
    // with an init system the packages must not start system-wide services.
    let _no_services = ServicesHeldBack::new()?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Debian's `policy-rc.d` hook, present while it lives: package scripts
/// then start no service. An existing hook is left as it is.
struct ServicesHeldBack(Option<&'static str>);

impl ServicesHeldBack {
    const PATH: &'static str = "/usr/sbin/policy-rc.d";

    fn new() -> Result<ServicesHeldBack> {
        use std::os::unix::fs::PermissionsExt;
        if std::path::Path::new(Self::PATH).exists() {
            return Ok(ServicesHeldBack(None));
        }
        std::fs::write(
            Self::PATH,
            "#!/bin/sh\n# Written by cargo xtask while installing packages.\nexit 101\n",
        )
        .with_context(|| format!("cannot write {}", Self::PATH))?;
        std::fs::set_permissions(Self::PATH, std::fs::Permissions::from_mode(0o755))?;
        Ok(ServicesHeldBack(Some(Self::PATH)))
    }
}

impl Drop for ServicesHeldBack {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An absolute path is a file that must exist; anything else a command
/// that [`which`] must find.
fn is_installed(command: &str) -> bool {
    let path = std::path::Path::new(command);
    if path.is_absolute() {
        path.is_file()
    } else {
        which(command).is_some()
    }
}

/// `command` in `PATH` or in the sbin directories, where Debian puts
/// daemons such as nginx and haproxy and which a non-login shell may lack.
fn which(command: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(command))
        .find(|path| path.is_file())
}

fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
