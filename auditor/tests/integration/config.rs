//! Configuration files as the binary checks them: `check-config` lists every
//! problem with its line and field and exits 2, and `run` and `replay` refuse
//! an invalid file the same way before they start.

use std::process::{Command, Output};

use crate::support::{daemon::AUDITOR, pcap_writer::TempFile};

/// Four problems, on lines 1, 6, 8 and 11.
const SEVERAL_PROBLEMS: &str = "interfaces = [\"lo\", \"lo\"]\n\
                                [[ports]]\n\
                                port = 8080\n\
                                \n\
                                [rules]\n\
                                disabled = [\"no-such-rule\"]\n\
                                [output]\n\
                                destinations = [\"stdout\", \"stdout\"]\n\
                                [capture]\n\
                                max_payload_per_segment = 16384\n\
                                ring_buffer_bytes = 1000\n";

fn auditor(args: &[&str]) -> Output {
    Command::new(AUDITOR)
        .args(args)
        .output()
        .expect("run auditor")
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines `auditor` prints on stderr for the problems of `file`.
fn expected(file: &TempFile, problems: &[&str]) -> Vec<String> {
    problems
        .iter()
        .map(|problem| format!("auditor: {}:{problem}", file.path().display()))
        .collect()
}

#[test]
fn check_config_prints_every_problem_with_its_line_and_exits_2() {
    let file = TempFile::new("several.toml", SEVERAL_PROBLEMS.as_bytes());
    let output = auditor(&["check-config", file.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        lines(&output.stderr),
        expected(
            &file,
            &[
                "1: interfaces[1]: `lo` is listed twice (first as interfaces[0])",
                "6: rules.disabled[0]: no rule `no-such-rule`; `auditor rules` lists them",
                "8: output.destinations[1]: `stdout` is listed twice (first as output.destinations[0])",
                "11: capture.ring_buffer_bytes: 1000 is not a power of two between 4096 and 1073741824 (1 GiB)",
            ]
        )
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn check_config_names_the_line_and_field_of_a_type_error() {
    // A type error stops the parse: the duplicate interface is not checked.
    let file = TempFile::new(
        "type.toml",
        b"interfaces = [\"lo\", \"lo\"]\n[[ports]]\nport = 8080\nrole = \"middle\"\n",
    );
    let output = auditor(&["check-config", file.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        lines(&output.stderr),
        expected(
            &file,
            &["4: ports[0].role: `middle` is not a role (frontend or backend)"]
        )
    );
}

#[test]
fn check_config_names_a_syntax_error_and_an_unreadable_file() {
    let file = TempFile::new("syntax.toml", b"[[ports]]\nport = 80\n[output\n");
    let output = auditor(&["check-config", file.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        lines(&output.stderr),
        expected(&file, &["3: invalid table header; expected `.`, `]`"])
    );

    let missing = auditor(&["check-config", "/nonexistent/auditor.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        lines(&missing.stderr),
        ["auditor: cannot read /nonexistent/auditor.toml: No such file or directory (os error 2)"]
    );
}

#[test]
fn check_config_summarises_a_valid_file() {
    let file = TempFile::new(
        "valid.toml",
        b"interfaces = [\"lo\"]\n\
          [[ports]]\nport = 80\n\
          [[ports]]\nport = 8080\nrole = \"backend\"\n\
          [rules]\n\
          disabled = [\"h2c-upgrade-deprecated\"]\n\
          severity = { \"upgrade-101-missing-connection-option\" = \"critical\" }\n\
          [[silence]]\nrole = \"backend\"\ncomment = \"a vendor's backend\"\n\
          [[silence]]\nrule = \"ws-key-invalid\"\nexpires = 2020-01-31\ncomment = \"fixed since\"\n\
          [output]\n\
          destinations = [\"stdout\", \"file:/var/log/auditor.json\"]\n\
          [metrics]\n\
          listen = \"127.0.0.1:9700\"\n",
    );
    let output = auditor(&["check-config", file.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{:?}", lines(&output.stderr));
    assert_eq!(
        lines(&output.stdout),
        [
            format!("{}: valid", file.path().display()),
            "  ports: 80, 8080:backend on lo".to_owned(),
            "  outputs: stdout, file:/var/log/auditor.json".to_owned(),
            "  rules: 1 disabled, 1 with a changed severity".to_owned(),
            "  silences: 2, 1 of them expired".to_owned(),
            "  metrics: 127.0.0.1:9700".to_owned(),
        ]
    );
    assert!(output.stderr.is_empty());
}

#[test]
fn check_config_gives_tables_left_out_their_defaults() {
    let file = TempFile::new(
        "reassembly-only.toml",
        b"[reassembly]\nmax_connections = 1024\n",
    );
    let output = auditor(&["check-config", file.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{:?}", lines(&output.stderr));
    assert_eq!(
        lines(&output.stdout)[..2],
        [
            format!("{}: valid", file.path().display()),
            "  ports: 80, 8080, 3000, 5000, 8000, 8081, 8888, 9000 on every interface that is up"
                .to_owned(),
        ]
    );

    let wrong = TempFile::new(
        "reassembly-wrong.toml",
        b"# bounds only\n[reassembly]\nmax_connections = 1024\nidle_timeout_secs = 0\n",
    );
    let output = auditor(&["check-config", wrong.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        lines(&output.stderr),
        expected(
            &wrong,
            &["4: reassembly.idle_timeout_secs: must be greater than 0"]
        )
    );
}

/// `run` loads the file before anything else: the refusal is the same as
/// `check-config`'s, with nothing about privileges or the kernel program.
#[test]
fn run_and_replay_refuse_an_invalid_file_as_check_config_does() {
    let file = TempFile::new("refused.toml", SEVERAL_PROBLEMS.as_bytes());
    let path = file.path().to_str().unwrap();
    let check = auditor(&["check-config", path]);
    assert_eq!(check.status.code(), Some(2));
    for args in [
        vec!["run", "--config", path, "--interface", "lo"],
        vec!["replay", "--config", path, "/nonexistent/capture.pcap"],
    ] {
        let refused = auditor(&args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert_eq!(lines(&refused.stderr), lines(&check.stderr), "{args:?}");
        assert!(refused.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn run_refuses_command_line_flags_that_contradict_each_other() {
    let output = auditor(&["run", "--port", "80", "--port", "80:backend"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        lines(&output.stderr),
        ["auditor: the command line: ports[1].port: port 80 is listed twice (first as ports[0])"]
    );
}
