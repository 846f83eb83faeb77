//! `auditor run`'s outputs, live on `lo` in a lab namespace: stdout, a file
//! and a real rsyslog at once; logrotate; SIGKILL; a stdout nobody reads; a
//! FIFO at a file's path. A file output on a full disk, through the library.

use std::{
    net::SocketAddr,
    ops::Range,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::support::{
    daemon::{Daemon, AUDITOR},
    lab::NetNs,
    require_privileges,
    rsyslog::Rsyslog,
    schema::valid_events,
    traffic::proxmox_upgrade,
};
use auditor::{
    events::{Event, LossCounters},
    output::{Destination, Format, QueuedOutputs, Sink},
};
use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::signal::Signal,
    unistd::pipe2,
};
use serde_json::Value;
use tempfile::TempDir;

const STARTUP: Duration = Duration::from_secs(20);
const ARRIVAL: Duration = Duration::from_secs(10);

fn server() -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().unwrap(), 8080)
}

/// A configuration watching port 8080 on `lo`, with `extra` appended.
fn config(dir: &TempDir, extra: &str) -> String {
    let path = dir.path().join("auditor.toml");
    let text = format!("interfaces = [\"lo\"]\n[[ports]]\nport = 8080\n{extra}");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn start(netns: &NetNs, config: &str, outputs: &[String]) -> Daemon {
    let mut args = vec!["run", "--config", config];
    for output in outputs {
        args.extend(["--output", output]);
    }
    let mut daemon = Daemon::start(netns, &args);
    daemon.wait_for("capture started", STARTUP);
    daemon
}

/// Proxmox-style exchanges from inside `netns`; the clients' addresses.
fn proxmox_upgrades(netns: &NetNs, count: usize) -> Vec<SocketAddr> {
    netns
        .spawn(move || {
            (0..count)
                .map(|_| proxmox_upgrade(server(), "/api2/json/backup"))
                .collect()
        })
        .join()
        .unwrap()
}

/// The events in the file at `path`, each checked against the schema.
fn file_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    valid_events(text.lines())
}

/// The events in the file at `path` while the daemon may be writing it: a
/// last line without its newline may still be growing.
fn events_so_far(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["event_type"] == event_type)
        .collect()
}

/// Waits until the file at `path` holds `count` events of `event_type`.
fn wait_for_events(path: &Path, event_type: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let events = events_so_far(path);
        if of_type(&events, event_type).len() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{count} {event_type} events expected in {}: {events:#?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn client_port(alert: &Value) -> u16 {
    alert["flow"]["src_port"].as_u64().unwrap() as u16
}

#[test]
#[ignore = "needs root"]
fn an_alert_reaches_stdout_a_file_and_a_real_rsyslog_alike() {
    require_privileges();
    let rsyslog = Rsyslog::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    let netns = NetNs::new();
    let daemon = start(
        &netns,
        &config(&dir, ""),
        &[
            "stdout".to_owned(),
            format!("file:{}", file.display()),
            format!("syslog:{}", rsyslog.socket().display()),
        ],
    );
    let pid = daemon.pid().to_string();
    proxmox_upgrades(&netns, 1);
    wait_for_events(&file, "alert", 1);
    rsyslog.wait_for(|message| message.msgid == "alert", ARRIVAL);
    daemon.signal(Signal::SIGINT);
    let (status, log, stdout) = daemon.wait_with_output();
    assert!(status.success(), "{log}");

    let file_lines = std::fs::read_to_string(&file).unwrap();
    let file_lines: Vec<&str> = file_lines.lines().collect();
    assert_eq!(stdout, file_lines, "stdout and the file got the same lines");
    let events = valid_events(file_lines.iter().copied());
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["handshake", "alert"]);
    assert_eq!(
        events[1]["alert"]["rule"],
        "upgrade-101-missing-connection-option"
    );
    assert_eq!(events[1]["alert"]["severity"], "error");

    let messages = rsyslog.messages();
    let received: Vec<(u8, &str, &str)> = messages
        .iter()
        .map(|m| (m.priority, m.msgid.as_str(), m.msg.as_str()))
        .collect();
    // daemon.info for the handshake, daemon.err for an error alert; the
    // JSON whole, byte for byte.
    assert_eq!(
        received,
        [
            (30, "handshake", file_lines[0]),
            (27, "alert", file_lines[1])
        ]
    );
    for message in &messages {
        assert_eq!(message.app_name, "upgrade-auditor");
        assert_eq!(message.procid, pid, "the daemon's pid");
        assert_eq!(message.hostname, events[1]["host"], "the event's host");
        assert_eq!(message.structured_data, "-");
    }
}

#[test]
#[ignore = "needs root"]
fn after_a_rename_and_sighup_new_events_go_to_a_new_file_and_none_is_lost() {
    require_privileges();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    let rotated = dir.path().join("events.json.1");
    let netns = NetNs::new();
    let mut daemon = start(
        &netns,
        &config(&dir, ""),
        &[format!("file:{}", file.display())],
    );
    let before = proxmox_upgrades(&netns, 1);
    wait_for_events(&file, "alert", 1);
    std::fs::rename(&file, &rotated).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for(
        &format!("SIGHUP: reopened output file:{}", file.display()),
        ARRIVAL,
    );
    assert!(file.exists(), "a new file at the path");
    let after = proxmox_upgrades(&netns, 2);
    wait_for_events(&file, "alert", 2);
    daemon.signal(Signal::SIGINT);
    let (status, log) = daemon.wait();
    assert!(status.success(), "{log}");

    for (path, clients) in [(&rotated, &before), (&file, &after)] {
        let events = file_events(path);
        let alerts: Vec<u16> = of_type(&events, "alert")
            .into_iter()
            .map(client_port)
            .collect();
        let handshakes: Vec<u16> = of_type(&events, "handshake")
            .into_iter()
            .map(client_port)
            .collect();
        let expected: Vec<u16> = clients.iter().map(SocketAddr::port).collect();
        assert_eq!(alerts, expected, "{}: {events:#?}", path.display());
        assert_eq!(handshakes, expected, "{}: {events:#?}", path.display());
        assert_eq!(events.len(), 2 * clients.len(), "{events:#?}");
    }
}

#[test]
#[ignore = "needs root"]
fn after_sigkill_the_file_holds_only_whole_json_lines() {
    require_privileges();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    let netns = NetNs::new();
    let daemon = start(
        &netns,
        &config(&dir, ""),
        &[format!("file:{}", file.display())],
    );
    let traffic = netns.spawn(|| {
        for _ in 0..200 {
            proxmox_upgrade(server(), "/api2/json/backup");
        }
    });
    wait_for_events(&file, "handshake", 20);
    daemon.signal(Signal::SIGKILL);
    let (status, _) = daemon.wait();
    assert_eq!(status.code(), None, "killed");
    traffic.join().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with('\n'), "the last line is whole");
    let events = valid_events(text.lines());
    assert!(of_type(&events, "handshake").len() >= 20);
}

#[test]
#[ignore = "needs root"]
fn a_stdout_nobody_reads_holds_up_neither_capture_nor_the_file_nor_the_exit() {
    require_privileges();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    let config = config(
        &dir,
        "[rate_limit]\nmax_alerts = 1000\n[output]\nqueue_capacity = 4\n[reporting]\nloss_interval_secs = 1\n",
    );
    let (unread, stdout) = pipe2(OFlag::O_CLOEXEC).unwrap();
    // One page: a couple of events fill it.
    let resized = fcntl(unread.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    assert_eq!(resized, 4096);
    let netns = NetNs::new();
    let mut daemon = Daemon::start_with_stdout(
        &netns,
        &[
            "run",
            "--config",
            &config,
            "--output",
            "stdout",
            "--output",
            &format!("file:{}", file.display()),
        ],
        Stdio::from(stdout),
    );
    daemon.wait_for("capture started", STARTUP);
    // One after the other, each once the file has its alert: the file's
    // queue never holds more than a few events, while stdout's overflows.
    let exchanges = 40;
    let mut clients = Vec::new();
    let mut events = Vec::new();
    for n in 1..=exchanges {
        clients.extend(proxmox_upgrades(&netns, 1));
        events = wait_for_events(&file, "alert", n);
    }
    let deadline = Instant::now() + ARRIVAL;
    while output_drops(&events) == 0 {
        assert!(
            Instant::now() < deadline,
            "a loss event with output_drops: {events:#?}"
        );
        thread::sleep(Duration::from_millis(100));
        events = events_so_far(&file);
    }
    daemon.signal(Signal::SIGINT);
    let stopping = Instant::now();
    let (status, log) = daemon.wait();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("output=stdout") && log.contains("took no event for 5s at shutdown"),
        "{log}"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "stdout did not hold up the exit"
    );
    drop(unread);

    let events = file_events(&file);
    let expected: Vec<u16> = clients.iter().map(SocketAddr::port).collect();
    for event_type in ["handshake", "alert"] {
        let ports: Vec<u16> = of_type(&events, event_type)
            .into_iter()
            .map(client_port)
            .collect();
        assert_eq!(ports, expected, "every {event_type}, in order");
    }
    assert!(
        output_drops(&events) > exchanges as u64,
        "most of the events were dropped for stdout: {events:#?}"
    );
}

#[test]
fn an_output_that_cannot_be_opened_is_named_before_capture_starts() {
    let output = std::process::Command::new(AUDITOR)
        .args(["run", "--interface", "lo", "--output", "stdout"])
        .args(["--output", "file:/nonexistent/auditor/events.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "auditor: cannot open output file:/nonexistent/auditor/events.json: No such file or directory"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("capture started"), "{stderr}");
}

#[test]
fn a_fifo_at_a_file_output_path_is_refused_before_capture_starts() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("events.json");
    mkfifo(&fifo);
    let mut auditor = Command::new(AUDITOR)
        .args(["run", "--interface", "lo", "--output", "stdout"])
        .args(["--output", &format!("file:{}", fifo.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + ARRIVAL;
    while auditor.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            auditor.kill().unwrap();
            auditor.wait().unwrap();
            panic!("auditor waited for a reader of the FIFO");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let output = auditor.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "auditor: cannot open output file:{}: not a regular file",
            fifo.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("capture started"), "{stderr}");
}

#[test]
#[ignore = "needs root"]
fn a_sighup_onto_a_fifo_holds_up_neither_capture_nor_the_other_file() {
    require_privileges();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.json");
    let rotated = dir.path().join("first.json.1");
    let second = dir.path().join("second.json");
    let netns = NetNs::new();
    let mut daemon = start(
        &netns,
        &config(&dir, ""),
        &[
            format!("file:{}", first.display()),
            format!("file:{}", second.display()),
        ],
    );
    let mut clients = proxmox_upgrades(&netns, 1);
    wait_for_events(&first, "alert", 1);
    std::fs::rename(&first, &rotated).unwrap();
    mkfifo(&first);
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for(
        &format!(
            "SIGHUP: cannot reopen output file:{}: not a regular file; it keeps writing to its old file",
            first.display()
        ),
        ARRIVAL,
    );
    clients.extend(proxmox_upgrades(&netns, 1));
    wait_for_events(&second, "alert", 2);
    wait_for_events(&rotated, "alert", 2);

    std::fs::remove_file(&first).unwrap();
    std::fs::write(&first, "").unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for(
        &format!("SIGHUP: reopened output file:{}", first.display()),
        ARRIVAL,
    );
    let after = proxmox_upgrades(&netns, 1);
    wait_for_events(&first, "alert", 1);
    clients.extend(&after);
    wait_for_events(&second, "alert", 3);
    daemon.signal(Signal::SIGINT);
    let (status, log) = daemon.wait();
    assert!(status.success(), "{log}");

    let expected =
        |clients: &[SocketAddr]| -> Vec<u16> { clients.iter().map(SocketAddr::port).collect() };
    for (path, clients) in [
        (&rotated, &clients[..2]),
        (&first, &after[..]),
        (&second, &clients[..]),
    ] {
        let events = file_events(path);
        let alerts: Vec<u16> = of_type(&events, "alert")
            .into_iter()
            .map(client_port)
            .collect();
        assert_eq!(alerts, expected(clients), "{}: {events:#?}", path.display());
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A 64 KiB tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

const TMPFS_BYTES: usize = 64 * 1024;
const PAGE_BYTES: usize = 4096;

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs");
        Tmpfs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(self.dir.path()).status();
        if !status.is_ok_and(|status| status.success()) && !thread::panicking() {
            panic!("umount {}", self.dir.path().display());
        }
    }
}

/// Loss events numbered from here all have lines of one length.
const FIRST_EVENT: u64 = 100_000;
/// Events sent while the disk is full, after the one it cut.
const SENT_WHILE_FULL: u64 = 3;

/// Loss event `n`, from a host whose name puts every page end of the tmpfs
/// inside a line's JSON, not at its end: the disk fills up in the middle of
/// a line, and what is left of it is not JSON.
fn numbered_event(n: u64) -> Event {
    let event = |host: &str| {
        let counters = LossCounters {
            kernel_drops: n,
            ..LossCounters::default()
        };
        Event::loss(1_795_677_188_420_039_999, host, counters)
    };
    let ends_pages_in_json = |host: &String| {
        let line = event_line(&event(host)).len();
        (1..=TMPFS_BYTES / PAGE_BYTES)
            .all(|pages| (1..line - 1).contains(&(pages * PAGE_BYTES % line)))
    };
    let host = (0..64)
        .map(|padding| format!("sensor{}", "-".repeat(padding)))
        .find(ends_pages_in_json)
        .expect("a host name of a length that fits");
    event(&host)
}

fn event_line(event: &Event) -> String {
    serde_json::to_string(event).unwrap() + "\n"
}

/// Sends the events numbered `numbers` one at a time, each once the
/// output has written or dropped the one before.
fn send_one_by_one(outputs: &mut QueuedOutputs, path: &Path, numbers: Range<u64>) {
    for n in numbers {
        let taken = whole_json_lines(path) + outputs.dropped();
        outputs.event(&numbered_event(n)).unwrap();
        outputs.flush().unwrap();
        let deadline = Instant::now() + ARRIVAL;
        while whole_json_lines(path) + outputs.dropped() == taken {
            assert!(
                Instant::now() < deadline,
                "event {n} neither written whole nor dropped"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The lines of the file at `path` that are JSON and end in a newline.
fn whole_json_lines(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    let ended = text.rfind('\n').map_or("", |end| &text[..end]);
    ended
        .lines()
        .filter(|line| serde_json::from_str::<Value>(line).is_ok())
        .count() as u64
}

/// A file output on the tmpfs, three quarters of it taken by a filler file,
/// sent events until the disk is full and then [`SENT_WHILE_FULL`] more;
/// then the filler is deleted and `after` events are sent. Returns the
/// file's text and the events dropped.
fn fill_the_disk_and_free_it(tmpfs: &Tmpfs, after: u64) -> (String, u64) {
    let path = tmpfs.path("events.json");
    let filler = tmpfs.path("filler");
    std::fs::write(&filler, vec![0; TMPFS_BYTES / 4 * 3]).unwrap();
    let mut outputs =
        QueuedOutputs::open(&[Destination::File(path.clone())], Format::Json, 64).unwrap();
    let mut next = FIRST_EVENT;
    while outputs.dropped() == 0 {
        send_one_by_one(&mut outputs, &path, next..next + 1);
        next += 1;
        assert!(next < FIRST_EVENT + 1000, "the disk never filled up");
    }
    send_one_by_one(&mut outputs, &path, next..next + SENT_WHILE_FULL);
    next += SENT_WHILE_FULL;
    std::fs::remove_file(&filler).unwrap();
    send_one_by_one(&mut outputs, &path, next..next + after);
    let dropped = outputs.dropped();
    drop(outputs);
    (std::fs::read_to_string(&path).unwrap(), dropped)
}

/// The number of each whole event line in `text`, and the lines that are
/// not JSON.
fn numbers_and_cut_lines(text: &str) -> (Vec<u64>, Vec<&str>) {
    let mut numbers = Vec::new();
    let mut cut = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(event) => numbers.push(event["loss"]["kernel_drops"].as_u64().unwrap()),
            Err(_) => cut.push(line),
        }
    }
    (numbers, cut)
}

/// The events written when the disk filled up after `before` of them: the
/// one cut and those sent while it was full are dropped.
fn whole_events_expected(before: u64, after: u64) -> Vec<u64> {
    let dropped = FIRST_EVENT + before..FIRST_EVENT + before + 1 + SENT_WHILE_FULL;
    (FIRST_EVENT..dropped.start)
        .chain(dropped.end..dropped.end + after)
        .collect()
}

#[test]
#[ignore = "needs root"]
fn after_a_full_disk_a_file_holds_only_whole_json_lines_and_the_rest_is_counted() {
    require_privileges();
    let tmpfs = Tmpfs::mount();
    let after = 20;
    let (text, dropped) = fill_the_disk_and_free_it(&tmpfs, after);
    let (numbers, cut) = numbers_and_cut_lines(&text);
    assert_eq!(cut, Vec::<&str>::new(), "every line is JSON");
    assert!(text.ends_with('\n'), "the last line is whole");
    assert_eq!(dropped, 1 + SENT_WHILE_FULL);
    let before = numbers.len() as u64 - after;
    assert_eq!(numbers, whole_events_expected(before, after));
}

#[test]
#[ignore = "needs root"]
fn after_a_full_disk_an_append_only_file_gets_a_newline_after_the_cut_line() {
    require_privileges();
    let tmpfs = Tmpfs::mount();
    let path = tmpfs.path("events.json");
    std::fs::write(&path, "").unwrap();
    // The cut line cannot be taken back.
    let status = Command::new("chattr")
        .arg("+a")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "chattr +a");
    let after = 20;
    let (text, dropped) = fill_the_disk_and_free_it(&tmpfs, after);
    let (numbers, cut) = numbers_and_cut_lines(&text);
    assert_eq!(dropped, 1 + SENT_WHILE_FULL);
    let before = numbers.len() as u64 - after;
    assert_eq!(numbers, whole_events_expected(before, after));
    let cut_line = text.lines().nth(before as usize).unwrap();
    assert_eq!(cut, [cut_line], "one line cut, after the whole ones");
    let cut_event = event_line(&numbered_event(FIRST_EVENT + before));
    assert!(
        cut_event.starts_with(cut_line) && cut_line.len() < cut_event.len() - 1,
        "{cut_line}: the start of {cut_event}"
    );
}

/// The sum of `output_drops` over the `loss` events.
fn output_drops(events: &[Value]) -> u64 {
    of_type(events, "loss")
        .iter()
        .map(|loss| loss["loss"]["output_drops"].as_u64().unwrap())
        .sum()
}
