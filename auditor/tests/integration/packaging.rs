//! The files under `packaging/` are what operators install: each must be
//! valid for the tool that reads it, and they must agree with each other and
//! with the daemon.

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use auditor::capture::privileges::REQUIRED;
use serde::Deserialize as _;
use serde_norway::Value;

const AUDITOR: &str = env!("CARGO_BIN_EXE_auditor");
const UNIT: &str = "systemd/upgrade-auditor.service";

fn packaging_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(relative)
}

fn read_packaging(relative: &str) -> String {
    let path = packaging_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The `[Service]` section's settings in file order, a key once per line.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not a setting: {line}"));
            settings.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    settings
}

/// The one value of `key`; fails when it is missing or repeated.
fn single_setting<'a>(settings: &'a [(String, String)], key: &str) -> &'a str {
    let values: Vec<&str> = settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect();
    match values[..] {
        [value] => value,
        _ => panic!("the unit must set {key} exactly once, it sets {values:?}"),
    }
}

/// A capability list as systemd reads it: lines add up, an empty one resets.
fn capability_set(settings: &[(String, String)], key: &str) -> BTreeSet<String> {
    let mut capabilities = BTreeSet::new();
    for (_, value) in settings.iter().filter(|(k, _)| k == key) {
        assert!(
            !value.starts_with('~'),
            "{key} must list what is granted, not what is removed"
        );
        if value.is_empty() {
            capabilities.clear();
        }
        capabilities.extend(value.split_whitespace().map(str::to_owned));
    }
    capabilities
}

/// The value after `flag` in a command line split on whitespace.
fn flag_value<'a>(command: &'a [&'a str], flag: &str) -> &'a str {
    let position = command
        .iter()
        .position(|word| *word == flag)
        .unwrap_or_else(|| panic!("{command:?} has no {flag}"));
    command
        .get(position + 1)
        .unwrap_or_else(|| panic!("{flag} has no value in {command:?}"))
}

/// The events file the unit's `ExecStart` writes.
fn unit_events_file(settings: &[(String, String)]) -> PathBuf {
    let exec_start: Vec<&str> = single_setting(settings, "ExecStart")
        .split_whitespace()
        .collect();
    let output = flag_value(&exec_start, "--output");
    PathBuf::from(
        output
            .strip_prefix("file:")
            .unwrap_or_else(|| panic!("the unit's --output {output} is not a file")),
    )
}

fn check_config(path: &Path) -> Output {
    Command::new(AUDITOR)
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run auditor check-config")
}

fn assert_valid_config(path: &Path, what: &str) {
    let output = check_config(path);
    assert!(
        output.status.success(),
        "{what} fails `auditor check-config`: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What `systemd-analyze verify` says about `unit`, with `ExecStart` running
/// the built binary (verify rejects a command that does not exist); `None`
/// when systemd-analyze is not installed.
///
/// Verify exits 0 after a misspelled or unparsable directive, which it only
/// reports, as `FILE:LINE: ... ignoring`: every line naming the unit counts
/// as a finding. Lines about other units or the machine (no systemd as PID 1)
/// do not.
fn systemd_analyze_findings(unit: &str) -> Option<Vec<String>> {
    let unit = unit.replacen(
        "ExecStart=/usr/local/bin/auditor ",
        &format!("ExecStart={AUDITOR} "),
        1,
    );
    assert!(
        unit.contains(AUDITOR),
        "the unit's ExecStart no longer runs /usr/local/bin/auditor"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade-auditor.service");
    std::fs::write(&path, unit).unwrap();
    let output = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut findings: Vec<String> = printed
        .lines()
        .filter(|line| line.contains("upgrade-auditor.service"))
        .map(str::to_owned)
        .collect();
    if !output.status.success() {
        findings.push(format!("systemd-analyze verify failed: {printed}"));
    }
    Some(findings)
}

/// systemd-analyze missing: a failure under CI, which must run every test;
/// otherwise a line on the terminal, past libtest's capture.
fn systemd_analyze_missing(test: &str) {
    let message =
        "systemd-analyze is not installed (`cargo xtask test` installs the systemd package)";
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "CI=true: {message}"
    );
    let _ = writeln!(std::io::stderr(), "test {test} skipped: {message}");
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Some(findings) = systemd_analyze_findings(&read_packaging(UNIT)) else {
        return systemd_analyze_missing("the_unit_passes_systemd_analyze_verify");
    };
    assert!(
        findings.is_empty(),
        "systemd-analyze verify:\n{}",
        findings.join("\n")
    );
}

#[test]
fn systemd_analyze_findings_include_a_misspelled_directive() {
    let misspelled = read_packaging(UNIT).replace("ProtectSystem=", "ProtectSytem=");
    let Some(findings) = systemd_analyze_findings(&misspelled) else {
        return systemd_analyze_missing("systemd_analyze_findings_include_a_misspelled_directive");
    };
    assert!(
        findings.iter().any(|line| line.contains("ProtectSytem")),
        "{findings:?}"
    );
}

#[test]
fn the_unit_grants_exactly_the_capabilities_the_daemon_needs() {
    let settings = service_settings(&read_packaging(UNIT));
    let required: BTreeSet<String> = REQUIRED.iter().map(|cap| cap.name.to_owned()).collect();
    assert_eq!(
        required,
        BTreeSet::from(["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"].map(str::to_owned))
    );
    assert_eq!(capability_set(&settings, "CapabilityBoundingSet"), required);
    assert_eq!(capability_set(&settings, "AmbientCapabilities"), required);
}

#[test]
fn the_unit_writes_events_where_it_may_and_reloads_with_sighup() {
    let settings = service_settings(&read_packaging(UNIT));
    // ProtectSystem=strict leaves only the LogsDirectory writable.
    assert_eq!(single_setting(&settings, "ProtectSystem"), "strict");
    let logs_directory = Path::new("/var/log").join(single_setting(&settings, "LogsDirectory"));
    assert_eq!(
        unit_events_file(&settings).parent(),
        Some(logs_directory.as_path())
    );
    assert_eq!(
        single_setting(&settings, "ExecReload"),
        "/bin/kill -HUP $MAINPID"
    );
}

#[test]
fn the_example_config_is_valid() {
    assert_valid_config(
        &packaging_path("systemd/config.toml"),
        "packaging/systemd/config.toml",
    );
}

fn manifest_documents() -> Vec<Value> {
    let text = read_packaging("kubernetes/daemonset.yaml");
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("daemonset.yaml is valid YAML"))
        .collect()
}

fn document<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let mut of_kind = documents
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind));
    let document = of_kind
        .next()
        .unwrap_or_else(|| panic!("the manifest has no {kind}"));
    assert!(of_kind.next().is_none(), "the manifest has several {kind}s");
    document
}

fn strings(sequence: &Value) -> Vec<&str> {
    sequence
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {sequence:?}"))
        .iter()
        .map(|item| item.as_str().expect("a string"))
        .collect()
}

#[test]
fn the_daemonset_runs_unprivileged_with_the_needed_capabilities_on_every_node() {
    let documents = manifest_documents();
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().expect("every document has a kind"))
        .collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap", "DaemonSet"]);
    let pod = &document(&documents, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert!(
        pod["tolerations"]
            .as_sequence()
            .is_some_and(|tolerations| tolerations
                .iter()
                .any(|t| t["operator"].as_str() == Some("Exists") && t["key"].is_null())),
        "a toleration of every taint lets it run on every node"
    );
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let security = &containers[0]["securityContext"];
    let required: Vec<&str> = REQUIRED
        .iter()
        .map(|cap| cap.name.strip_prefix("CAP_").unwrap())
        .collect();
    assert_eq!(strings(&security["capabilities"]["add"]), required);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(security["privileged"].as_bool(), Some(false));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(
        containers[0]["resources"]["limits"]["memory"].as_str(),
        Some("256Mi")
    );
}

#[test]
fn the_daemonset_reads_the_config_map_and_it_is_valid() {
    let documents = manifest_documents();
    let pod = &document(&documents, "DaemonSet")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let command = strings(&container["command"]);
    assert_eq!(command[1], "run");
    assert!(
        !command.contains(&"--output"),
        "events go to stdout, the default"
    );
    let config = Path::new(flag_value(&command, "--config"));

    let mount = container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str().map(Path::new) == config.parent())
        .unwrap_or_else(|| panic!("no volume is mounted where {config:?} is"));
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume is declared");
    let config_map = document(&documents, "ConfigMap");
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);

    let file_name = config.file_name().unwrap().to_str().unwrap();
    let text = config_map["data"][file_name]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {file_name}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, text).unwrap();
    assert_valid_config(&path, "the ConfigMap's config.toml");
}

/// The README's bound on the daemon's resident memory for `config`, in
/// MiB: the process itself, the ring buffer (mapped twice), the tracking of
/// every connection, the buffer budget, and the output queues full of
/// events of the common size.
fn memory_bound_mib(config: &auditor::config::Config) -> u64 {
    const PROCESS: u64 = 24 << 20;
    const PER_CONNECTION: u64 = 1024;
    const EVENT: u64 = 2048;
    let queues = config.output.destinations.len() as u64;
    let bytes = PROCESS
        + 2 * u64::from(config.capture.ring_buffer_bytes)
        + config.reassembly.max_connections as u64 * PER_CONNECTION
        + config.reassembly.max_buffered_total as u64
        + queues * config.output.queue_capacity as u64 * EVENT;
    bytes >> 20
}

#[test]
fn the_daemonsets_configuration_fits_its_memory_limit() {
    let documents = manifest_documents();
    let text = document(&documents, "ConfigMap")["data"]["config.toml"]
        .as_str()
        .expect("the ConfigMap's config.toml");
    let config = auditor::config::Config::parse(text, "config.toml").unwrap();
    let pod = &document(&documents, "DaemonSet")["spec"]["template"]["spec"];
    let limit = pod["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .and_then(|limit| limit.strip_suffix("Mi"))
        .and_then(|mib| mib.parse::<u64>().ok())
        .expect("a memory limit in Mi");
    let bound = memory_bound_mib(&config);
    assert!(
        bound <= limit,
        "{bound} MiB by the README's formula, over the {limit} MiB limit"
    );
    let defaults = memory_bound_mib(&auditor::config::Config::embedded_default());
    assert!(
        defaults > limit,
        "the defaults ({defaults} MiB) would not fit: the ConfigMap must lower them"
    );
}

#[test]
fn vector_reads_the_events_file_the_unit_writes() {
    let vector: toml::Table = read_packaging("vector/vector.toml")
        .parse()
        .expect("vector.toml is valid TOML");
    let events_file = unit_events_file(&service_settings(&read_packaging(UNIT)));
    let sources = vector["sources"].as_table().expect("[sources]");
    let file_includes: Vec<&str> = sources
        .values()
        .filter(|source| source["type"].as_str() == Some("file"))
        .flat_map(|source| source["include"].as_array().expect("include"))
        .map(|path| path.as_str().expect("a path"))
        .collect();
    assert_eq!(file_includes, [events_file.to_str().unwrap()]);
}

#[test]
fn vector_components_take_inputs_that_exist() {
    let vector: toml::Table = read_packaging("vector/vector.toml").parse().unwrap();
    let table = |name: &str| {
        vector[name]
            .as_table()
            .unwrap_or_else(|| panic!("[{name}]"))
    };
    let (sources, transforms, sinks) = (table("sources"), table("transforms"), table("sinks"));
    let mut outputs: BTreeSet<String> = sources.keys().chain(transforms.keys()).cloned().collect();
    for (name, transform) in transforms {
        if let Some(routes) = transform.get("route").and_then(|r| r.as_table()) {
            outputs.extend(routes.keys().map(|route| format!("{name}.{route}")));
        }
    }
    for (name, component) in transforms.iter().chain(sinks) {
        let inputs = component["inputs"].as_array().expect("inputs");
        assert!(!inputs.is_empty(), "{name} has no inputs");
        for input in inputs {
            let input = input.as_str().expect("an input name");
            assert!(
                outputs.contains(input),
                "{name} reads {input}, which does not exist"
            );
        }
    }
}
