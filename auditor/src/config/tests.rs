use std::collections::BTreeMap;

use super::*;
use crate::rules::Severity;

/// Every line of the error for `text`, read as `x.toml`.
fn problems(text: &str) -> Vec<String> {
    Config::parse(text, "x.toml")
        .unwrap_err()
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A file that watches port 80 (two lines), then `rest`.
fn with_port(rest: &str) -> String {
    format!("[[ports]]\nport = 80\n{rest}")
}

#[test]
fn embedded_default_watches_http_and_backend_ports_everywhere() {
    let config = Config::embedded_default();
    assert!(config.interfaces.is_empty());
    let ports: Vec<u16> = config.ports.iter().map(|p| p.port).collect();
    assert_eq!(ports, [80, 8080, 3000, 5000, 8000, 8081, 8888, 9000]);
    assert_eq!(config.rules, RuleSettings::default());
    assert_eq!(config.output, OutputSettings::default());
    assert_eq!(config.reporting, ReportingSettings::default());
    assert_eq!(config.capture, CaptureSettings::default());
    assert_eq!(config.metrics.listen, None);
}

#[test]
fn parses_ports_with_roles() {
    let config = Config::parse(
        "interfaces = [\"eth0\"]\n[[ports]]\nport = 443\n[[ports]]\nport = 8080\nrole = \"backend\"\n",
        "test",
    )
    .unwrap();
    assert_eq!(config.interfaces, ["eth0"]);
    assert_eq!(config.ports[1].role, Some(PortRole::Backend));
    assert_eq!(config.ports[0].role, None);
}

#[test]
fn parses_every_new_section() {
    let config = Config::parse(
        &with_port(
            "[rules]\n\
             disabled = [\"h2c-upgrade-deprecated\"]\n\
             severity = { \"upgrade-101-missing-connection-option\" = \"critical\" }\n\
             [output]\n\
             destinations = [\"stdout\", \"file:/var/log/auditor.json\", \"syslog\"]\n\
             format = \"pretty\"\n\
             queue_capacity = 100\n\
             [reporting]\n\
             loss_interval_secs = 10\n\
             stats_interval_secs = 30\n\
             [capture]\n\
             max_payload_per_segment = 512\n\
             ring_buffer_bytes = 4096\n\
             [metrics]\n\
             listen = \"127.0.0.1:9700\"\n",
        ),
        "test",
    )
    .unwrap();
    assert_eq!(config.rules.disabled, ["h2c-upgrade-deprecated"]);
    assert_eq!(
        config.rules.severity,
        BTreeMap::from([(
            "upgrade-101-missing-connection-option".to_owned(),
            Severity::Critical
        )])
    );
    assert_eq!(
        config.output,
        OutputSettings {
            destinations: vec![
                Destination::Stdout,
                Destination::File("/var/log/auditor.json".into()),
                Destination::Syslog("/dev/log".into()),
            ],
            format: EventFormat::Pretty,
            queue_capacity: 100,
        }
    );
    assert_eq!(
        config.reporting,
        ReportingSettings {
            loss_interval_secs: 10,
            stats_interval_secs: 30
        }
    );
    assert_eq!(
        config.capture,
        CaptureSettings {
            max_payload_per_segment: 512,
            ring_buffer_bytes: 4096
        }
    );
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9700".parse().unwrap())
    );
}

#[test]
fn syntax_and_type_errors_name_their_line_and_field() {
    assert_eq!(
        problems("[[ports]]\nport = 70000\n"),
        ["x.toml:2: ports[0].port: invalid value: integer `70000`, expected u16"]
    );
    assert_eq!(
        problems("[[ports]]\nport = 80\n\n[[ports]]\nport = 81\nrole = \"middle\"\n"),
        ["x.toml:6: ports[1].role: `middle` is not a role (frontend or backend)"]
    );
    assert_eq!(
        problems("[[ports]]\nport = 80\n[[ports]]\nrole = \"backend\"\n"),
        ["x.toml:3: ports[1]: missing field `port`"]
    );
    assert_eq!(
        problems("[[ports]\nport = 80\n"),
        ["x.toml:1: invalid table header; expected `.`, `]]`"]
    );
    assert_eq!(
        problems(&with_port("[rules]\nseverity = { \"upgrade-101-missing-connection-option\" = \"fatal\" }\n")),
        ["x.toml:4: rules.severity.upgrade-101-missing-connection-option: `fatal` is not a severity (info, warning, error, critical)"]
    );
    // The deserializer gives the span of the whole list, not of the element.
    assert_eq!(
        problems(&with_port("[output]\ndestinations = [\n  \"stdout\",\n  \"http://x\",\n]\n")),
        ["x.toml:4: output.destinations: `http://x` is not an output (stdout, file:PATH, syslog or syslog:SOCKET)"]
    );
    assert_eq!(
        problems(&with_port("[output]\nformat = \"xml\"\n")),
        ["x.toml:4: output.format: unknown variant `xml`, expected `json` or `pretty`"]
    );
    assert_eq!(
        problems(&with_port("[metrics]\nlisten = \"localhost\"\n")),
        ["x.toml:4: metrics.listen: invalid socket address syntax"]
    );
    assert_eq!(
        problems(&with_port("[capture]\nring_buffer_bytes = -1\n")),
        ["x.toml:4: capture.ring_buffer_bytes: invalid value: integer `-1`, expected u32"]
    );
}

#[test]
fn unknown_keys_are_errors_in_every_table() {
    assert_eq!(
        problems("colour = 1\n[[ports]]\nport = 80\n"),
        ["x.toml:1: colour: unknown field `colour`, expected one of `interfaces`, `ports`, `reassembly`, `rate_limit`, `redaction`, `rules`, `silence`, `output`, `reporting`, `capture`, `metrics`"]
    );
    assert_eq!(
        problems("[[ports]]\nport = 80\ncolour = 1\n"),
        ["x.toml:3: ports[0].colour: unknown field `colour`, expected `port` or `role`"]
    );
    for (table, expected) in [
        ("reassembly", "one of `max_connections`, `max_buffered_per_connection`, `max_buffered_total`, `idle_timeout_secs`"),
        ("rate_limit", "one of `max_alerts`, `interval_secs`, `max_tracked_keys`"),
        ("redaction", "one of `headers`, `query_strings`, `secret_subprotocol_prefixes`"),
        ("rules", "`disabled` or `severity`"),
        ("output", "one of `destinations`, `format`, `queue_capacity`"),
        ("reporting", "`loss_interval_secs` or `stats_interval_secs`"),
        ("capture", "`max_payload_per_segment` or `ring_buffer_bytes`"),
        ("metrics", "`listen`"),
    ] {
        assert_eq!(
            problems(&with_port(&format!("[{table}]\ncolour = 1\n"))),
            [format!("x.toml:4: {table}.colour: unknown field `colour`, expected {expected}")],
        );
    }
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = "interfaces = [\"lo\", \"lo\", \"\"]\n\
                \n\
                [[ports]]\n\
                port = 80\n\
                [[ports]]\n\
                port = 80\n\
                \n\
                [capture]\n\
                ring_buffer_bytes = 5000\n\
                max_payload_per_segment = 0\n\
                \n\
                [rules]\n\
                disabled = [\"no-such-rule\"]\n\
                severity = { \"other-rule\" = \"critical\" }\n\
                \n\
                [output]\n\
                destinations = []\n\
                queue_capacity = 0\n\
                [reporting]\n\
                loss_interval_secs = 0\n";
    assert_eq!(
        problems(text),
        [
            "x.toml:1: interfaces[2]: is empty",
            "x.toml:1: interfaces[1]: `lo` is listed twice (first as interfaces[0])",
            "x.toml:6: ports[1].port: port 80 is listed twice (first as ports[0])",
            "x.toml:9: capture.ring_buffer_bytes: 5000 is not a power of two between 4096 and 1073741824 (1 GiB)",
            "x.toml:10: capture.max_payload_per_segment: 0 is not between 1 and 16384",
            "x.toml:13: rules.disabled[0]: no rule `no-such-rule`; `auditor rules` lists them",
            "x.toml:14: rules.severity.other-rule: no rule `other-rule`; `auditor rules` lists them",
            "x.toml:17: output.destinations: is empty: events would go nowhere",
            "x.toml:18: output.queue_capacity: 0 is not between 1 and 1048576",
            "x.toml:20: reporting.loss_interval_secs: 0 is not between 1 and 86400",
        ]
    );
}

/// Each check with the one line it reports for `rest` after the two lines of
/// `with_port`.
#[test]
fn each_check_reports_its_field_on_its_line() {
    for (rest, expected) in [
        ("[rules]\ndisabled = [\"h2c-upgrade-deprecated\", \"h2c-upgrade-deprecated\"]\n",
         "x.toml:4: rules.disabled[1]: `h2c-upgrade-deprecated` is listed twice (first as rules.disabled[0])"),
        ("[output]\ndestinations = [\"stdout\", \"file:/a\", \"stdout\"]\n",
         "x.toml:4: output.destinations[2]: `stdout` is listed twice (first as output.destinations[0])"),
        ("[output]\nqueue_capacity = 1048577\n",
         "x.toml:4: output.queue_capacity: 1048577 is not between 1 and 1048576"),
        ("[reporting]\nloss_interval_secs = 86401\n",
         "x.toml:4: reporting.loss_interval_secs: 86401 is not between 1 and 86400"),
        ("[reporting]\nstats_interval_secs = 86401\n",
         "x.toml:4: reporting.stats_interval_secs: 86401 is more than 86400 (a day); 0 turns stats events off"),
        ("[capture]\nmax_payload_per_segment = 16385\n",
         "x.toml:4: capture.max_payload_per_segment: 16385 is not between 1 and 16384"),
        ("[capture]\nring_buffer_bytes = 2048\n",
         "x.toml:4: capture.ring_buffer_bytes: 2048 is not a power of two between 4096 and 1073741824 (1 GiB)"),
        ("[capture]\nring_buffer_bytes = 2147483648\n",
         "x.toml:4: capture.ring_buffer_bytes: 2147483648 is not a power of two between 4096 and 1073741824 (1 GiB)"),
        ("[reassembly]\nmax_connections = 0\n",
         "x.toml:4: reassembly.max_connections: must be greater than 0"),
        ("[reassembly]\nidle_timeout_secs = 0\n",
         "x.toml:4: reassembly.idle_timeout_secs: must be greater than 0"),
        ("[reassembly]\nmax_buffered_per_connection = 100\nmax_buffered_total = 10\n",
         "x.toml:4: reassembly.max_buffered_per_connection: 100 is more than reassembly.max_buffered_total (10)"),
        // Left to its default, the field has no line: the table's is given.
        ("\n[reassembly]\nmax_buffered_total = 10\n",
         "x.toml:4: reassembly.max_buffered_per_connection: 262144 is more than reassembly.max_buffered_total (10)"),
        ("[rate_limit]\ninterval_secs = 0\n",
         "x.toml:4: rate_limit.interval_secs: must be greater than 0"),
        ("[rate_limit]\nmax_tracked_keys = 0\n",
         "x.toml:4: rate_limit.max_tracked_keys: must be greater than 0"),
        ("[redaction]\nheaders = [\"Cookie\", \"X-Api-Key\"]\n",
         "x.toml:4: redaction.headers[1]: `X-Api-Key` is never redacted; only Authorization, Proxy-Authorization, Cookie and Set-Cookie can be allowed"),
        ("[redaction]\nsecret_subprotocol_prefixes = [\"\"]\n",
         "x.toml:4: redaction.secret_subprotocol_prefixes[0]: is empty: every subprotocol would read [redacted]"),
        ("[redaction]\nsecret_subprotocol_prefixes = [\"a b\"]\n",
         "x.toml:4: redaction.secret_subprotocol_prefixes[0]: `a b` begins no subprotocol: subprotocols are tokens (letters, digits and !#$%&'*+-.^_`|~)"),
        ("[redaction]\nsecret_subprotocol_prefixes = [\"t.\", \"t.\"]\n",
         "x.toml:4: redaction.secret_subprotocol_prefixes[1]: `t.` is listed twice (first as redaction.secret_subprotocol_prefixes[0])"),
        ("[[ports]]\nport = 0\n",
         "x.toml:4: ports[1].port: 0 is not a TCP port (1-65535)"),
    ] {
        assert_eq!(problems(&with_port(rest)), [expected], "{rest}");
    }
    assert_eq!(
        problems("ports = []\n"),
        ["x.toml:1: ports: is empty: nothing would be watched"]
    );
    assert_eq!(
        problems("interfaces = [\"an-interface-name\"]\nports = [{ port = 80 }]\n"),
        ["x.toml:1: interfaces[0]: `an-interface-name` is longer than 15 bytes, which no Linux interface name is"]
    );
}

#[test]
fn the_bounds_themselves_are_valid() {
    let config = Config::parse(
        &with_port(
            "[redaction]\nheaders = [\"cookie\", \"AUTHORIZATION\"]\n\
             [output]\nqueue_capacity = 1048576\n\
             [reporting]\nloss_interval_secs = 86400\nstats_interval_secs = 0\n\
             [capture]\nmax_payload_per_segment = 16384\nring_buffer_bytes = 1073741824\n",
        ),
        "test",
    )
    .unwrap();
    assert_eq!(config.capture.ring_buffer_bytes, 1 << 30);
    for minimum in [
        "[output]\nqueue_capacity = 1\n",
        "[reporting]\nloss_interval_secs = 1\nstats_interval_secs = 1\n",
        "[capture]\nmax_payload_per_segment = 1\nring_buffer_bytes = 4096\n",
    ] {
        Config::parse(&with_port(minimum), "test").unwrap();
    }
}

#[test]
fn reassembly_bounds_have_defaults_and_can_be_set() {
    assert_eq!(
        Config::embedded_default().reassembly.limits(),
        ReassemblyLimits::default()
    );
    let config = Config::parse(
        &with_port("[reassembly]\nmax_connections = 10\nidle_timeout_secs = 2\n"),
        "test",
    )
    .unwrap();
    let limits = config.reassembly.limits();
    assert_eq!(limits.max_connections, 10);
    assert_eq!(limits.idle_timeout_ns, 2_000_000_000);
    assert_eq!(
        limits.max_buffered_total,
        ReassemblyLimits::default().max_buffered_total
    );
}

#[test]
fn rate_limit_and_redaction_can_be_set() {
    let config = Config::parse(
        &with_port(
            "[rate_limit]\nmax_alerts = 3\n\
             [redaction]\nheaders = [\"Cookie\"]\nsecret_subprotocol_prefixes = [\"access_token.\"]\n",
        ),
        "test",
    )
    .unwrap();
    assert_eq!(config.rate_limit.max_alerts, 3);
    assert_eq!(
        config.rate_limit.interval_secs,
        RateLimitSettings::default().interval_secs
    );
    assert_eq!(config.redaction.headers, ["Cookie"]);
    assert!(!config.redaction.query_strings);
    assert_eq!(
        config.redaction.secret_subprotocol_prefixes,
        ["access_token."]
    );
}

#[test]
fn tables_left_out_keep_the_embedded_defaults() {
    assert_eq!(
        Config::parse("", "test").unwrap(),
        Config::embedded_default()
    );
    let config = Config::parse("[reassembly]\nmax_connections = 10\n", "test").unwrap();
    assert_eq!(config.ports, Config::embedded_default().ports);
    assert_eq!(config.reassembly.max_connections, 10);
}

#[test]
fn a_file_without_ports_names_the_field_and_line_of_its_problems() {
    assert_eq!(
        problems("[reassembly]\nmax_connections = 0\n"),
        ["x.toml:2: reassembly.max_connections: must be greater than 0"]
    );
    assert_eq!(
        problems("[reassembly]\nmax_connections = \"many\"\n"),
        ["x.toml:2: reassembly.max_connections: invalid type: string \"many\", expected usize"]
    );
}

#[test]
fn command_line_overrides_replace_what_they_name() {
    let file = Config::parse(
        "interfaces = [\"eth0\"]\n\
         [[ports]]\nport = 80\n\
         [output]\ndestinations = [\"syslog\"]\nformat = \"json\"\n\
         [metrics]\nlisten = \"127.0.0.1:9700\"\n",
        "test",
    )
    .unwrap();

    let mut unchanged = file.clone();
    Overrides::default().apply(&mut unchanged);
    assert_eq!(unchanged, file);

    let mut config = file.clone();
    Overrides {
        interfaces: vec!["lo".into()],
        ports: vec!["8080:backend".parse().unwrap()],
        destinations: vec![Destination::Stdout, Destination::File("/tmp/a".into())],
        format: Some(EventFormat::Pretty),
        metrics: Some("127.0.0.1:9800".parse().unwrap()),
    }
    .apply(&mut config);
    assert_eq!(
        config,
        Config {
            interfaces: vec!["lo".into()],
            ports: vec![WatchedPort {
                port: 8080,
                role: Some(PortRole::Backend)
            }],
            output: OutputSettings {
                destinations: vec![Destination::Stdout, Destination::File("/tmp/a".into())],
                format: EventFormat::Pretty,
                ..file.output.clone()
            },
            metrics: MetricsSettings {
                listen: Some("127.0.0.1:9800".parse().unwrap())
            },
            ..file.clone()
        }
    );
    assert_eq!(config.validate("the command line").ok(), Some(()));
}

#[test]
fn overrides_are_validated_without_lines() {
    let mut config = Config::embedded_default();
    Overrides {
        ports: vec!["80".parse().unwrap(), "80:frontend".parse().unwrap()],
        destinations: vec![Destination::Stdout, Destination::Stdout],
        ..Overrides::default()
    }
    .apply(&mut config);
    assert_eq!(
        config.validate("the command line").unwrap_err().to_string(),
        "the command line: ports[1].port: port 80 is listed twice (first as ports[0])\n\
         the command line: output.destinations[1]: `stdout` is listed twice (first as output.destinations[0])"
    );
}

#[test]
fn an_unreadable_file_is_named() {
    let error = Config::load(Path::new("/nonexistent/auditor.toml")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read /nonexistent/auditor.toml: No such file or directory (os error 2)"
    );
}

#[test]
fn parses_command_line_ports() {
    assert_eq!(
        "8080:frontend".parse::<WatchedPort>(),
        Ok(WatchedPort {
            port: 8080,
            role: Some(PortRole::Frontend)
        })
    );
    assert_eq!("80".parse::<WatchedPort>().unwrap().role, None);
    assert!("0".parse::<WatchedPort>().is_err());
    assert!("http".parse::<WatchedPort>().is_err());
    assert_eq!(
        "80:sideways".parse::<WatchedPort>(),
        Err("`sideways` is not a role (frontend or backend)".to_owned())
    );
}

#[test]
fn silences_parse_and_each_problem_is_named() {
    let config = Config::parse(
        &with_port(
            "[[silence]]\n\
             rule = \"upgrade-101-missing-connection-option\"\n\
             server = \"10.1.0.0/16\"\n\
             server_port = 8007\n\
             client = \"10.2.0.7\"\n\
             role = \"backend\"\n\
             host = \"*.pbs.example\"\n\
             expires = 2027-03-31\n\
             comment = \"vendor appliance, OPS-1234\"\n",
        ),
        "x.toml",
    )
    .unwrap();
    assert_eq!(config.silence.len(), 1);
    assert_eq!(config.silence[0].server_port, Some(8007));

    assert_eq!(
        problems(&with_port(
            "[[silence]]\n\
             comment = \" \"\n\
             [[silence]]\n\
             rule = \"no-such-rule\"\n\
             server_port = 0\n\
             host = \"*.\"\n\
             comment = \"c\"\n"
        )),
        [
            "x.toml:3: silence[0]: would silence every alert: give a rule, server, server_port, client, role or host",
            "x.toml:4: silence[0].comment: is empty: say why the finding is accepted",
            "x.toml:6: silence[1].rule: no rule `no-such-rule`; `auditor rules` lists them",
            "x.toml:7: silence[1].server_port: 0 is not a TCP port (1-65535)",
            "x.toml:8: silence[1].host: names no host",
        ]
    );
    assert_eq!(
        problems(&with_port("[[silence]]\nrule = \"ws-key-invalid\"\n")),
        ["x.toml:3: silence[0]: missing field `comment`"]
    );
    let bad_network = problems(&with_port(
        "[[silence]]\nserver = \"10.0.0.0/33\"\ncomment = \"c\"\n",
    ));
    assert!(
        bad_network[0].contains("is neither an address nor a network"),
        "{bad_network:?}"
    );
}
