//! `auditor replay`'s progress bar: on a terminal for large inputs, never
//! on a pipe or for small ones.

use std::{
    fs::File,
    io::Read,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    thread,
};

use crate::support::{
    daemon::AUDITOR,
    pcap_writer::{pcap, Conversation, Link, TempFile},
    replay::{json_lines, replay},
    traffic::{pattern, PROXMOX_101, PROXMOX_OFFER},
};
use auditor::replay::PROGRESS_MIN_BYTES;
use nix::pty::{openpty, Winsize};
use serde_json::Value;

/// A Proxmox upgrade followed by `bulk_bytes` of backup data.
fn capture(name: &str, bulk_bytes: u64) -> TempFile {
    let client: SocketAddr = "10.20.0.1:43000".parse().unwrap();
    let server: SocketAddr = "10.20.0.2:8007".parse().unwrap();
    let mut conversation = Conversation::new(client, server);
    conversation
        .handshake()
        .client_sends(PROXMOX_OFFER)
        .server_sends(PROXMOX_101);
    let chunk = pattern(32 * 1024, 1);
    for _ in 0..bulk_bytes.div_ceil(chunk.len() as u64) {
        conversation.client_sends(&chunk);
    }
    conversation.client_fin().server_fin();
    TempFile::new(name, &pcap(Link::Ethernet, conversation.packets()))
}

/// `auditor replay FILE` with stderr on a terminal: its stdout, and what
/// reached the terminal.
fn replay_on_a_terminal(file: &Path) -> (String, String) {
    let size = Winsize {
        ws_row: 24,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let terminal = openpty(Some(&size), None).expect("open a pseudo-terminal");
    let child = Command::new(AUDITOR)
        .arg("replay")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(terminal.slave)
        .spawn()
        .expect("run auditor replay");
    let mut master = File::from(terminal.master);
    // Read while it runs, so a full terminal buffer never blocks it. The
    // read fails (EIO) once the replay closed its end.
    let screen = thread::spawn(move || {
        let mut screen = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(read @ 1..) = master.read(&mut buffer) {
            screen.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&screen).into_owned()
    });
    let output = child.wait_with_output().expect("wait for auditor replay");
    assert!(output.status.success());
    (
        String::from_utf8(output.stdout).unwrap(),
        screen.join().unwrap(),
    )
}

#[test]
fn a_large_replay_shows_progress_on_a_terminal_and_nothing_on_a_pipe() {
    let file = capture("large.pcap", PROGRESS_MIN_BYTES);
    assert!(std::fs::metadata(file.path()).unwrap().len() >= PROGRESS_MIN_BYTES);

    let (stdout, screen) = replay_on_a_terminal(file.path());
    assert!(screen.contains("replaying ["), "{screen:?}");
    assert!(screen.contains(" MiB"), "{screen:?}");

    let piped = replay(&[], &[file.path()], json_lines);
    assert_eq!(piped.code, Some(0));
    assert_eq!(piped.stderr, "");
    assert_eq!(piped.stdout, stdout, "the bar never touches the events");
    let rules: Vec<&Value> = piped
        .lines
        .iter()
        .filter(|e| e["event_type"] == "alert")
        .map(|e| &e["alert"]["rule"])
        .collect();
    assert_eq!(rules, ["upgrade-101-missing-connection-option"]);
}

#[test]
fn a_small_replay_shows_no_progress_even_on_a_terminal() {
    let file = capture("small.pcap", 64 * 1024);
    let (stdout, screen) = replay_on_a_terminal(file.path());
    assert_eq!(screen, "");
    assert!(stdout.contains("upgrade-101-missing-connection-option"));
}
