//! The outputs of `auditor run`: each destination has its own writer thread
//! behind its own bounded queue, so a slow or broken destination holds up
//! neither capture nor the other destinations. An event that finds a queue
//! full, or that its destination fails to take, is dropped and counted.
//!
//! Events go to the writers in batches, one per pipeline flush (a drain of
//! the ring buffer): waking a writer thread costs more than writing an event.
//!
//! SIGHUP's reopen of a file is a request in the same queue, carried out by
//! the writer between the batches sent before and after it: an open that
//! hangs (a FIFO, a dead network filesystem) holds up that output alone.

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{self, Receiver, SyncSender},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    file::AppendFile,
    syslog::{SyslogSeverity, SyslogSocket},
    Destination, Format, Sink,
};
use crate::{
    capabilities,
    events::{pretty, Event, EventBody, ExchangeRecord},
    http::Exchange,
};

/// How long shutdown waits for the writers to empty their queues.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Room for a usual event's JSON line from the start, rather than growing
/// the line four times while it is written.
const JSON_LINE_CAPACITY: usize = 2048;
/// Stdout and files take a batch's lines in writes of about this size: one
/// system call per event cost more than writing it.
const STREAM_WRITE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("cannot open output {destination}: {source}")]
pub struct OpenError {
    destination: Destination,
    source: io::Error,
}

/// Every destination of `auditor run`; dropping it drains every queue and
/// waits for the writers.
pub struct QueuedOutputs {
    queues: Vec<Queue>,
    /// `Some(colour)` when stdout wants the pretty rendering.
    stdout_pretty: Option<bool>,
    /// Events rendered since the last flush.
    batch: Vec<Rendered>,
}

/// Events rendered once, for every destination.
type Batch = Arc<Vec<Rendered>>;

/// What a writer thread takes from its queue, in order.
enum Request {
    Write(Batch),
    /// Open the file again at its path.
    Reopen,
}

struct Queue {
    destination: Destination,
    /// `None` once closed, so that the writer finishes.
    sender: Option<SyncSender<Request>>,
    capacity: usize,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// What the queue's sender and its writer thread both keep up to date.
#[derive(Default)]
struct Shared {
    /// Events sent and not yet taken by the writer, at most the queue's
    /// capacity (or one batch, when the queue is empty).
    waiting: AtomicUsize,
    /// Events refused by the full queue or not taken by the destination.
    dropped: AtomicU64,
    /// A reopen request is in the queue, not yet taken by the writer.
    reopen_pending: AtomicBool,
}

/// One event, rendered once for every destination.
struct Rendered {
    /// JSON and a newline.
    json_line: String,
    /// For stdout with `--format pretty`.
    pretty: Option<String>,
    severity: SyslogSeverity,
    /// The syslog MSGID: the event type.
    kind: &'static str,
}

enum Writer {
    Stdout,
    File(AppendFile),
    Syslog(SyslogSocket),
}

impl QueuedOutputs {
    /// Opens every destination, then starts their writers; stdout is written
    /// in `stdout_format`, the others get JSON. Each queue holds up to
    /// `queue_capacity` events, or one larger batch when it is empty.
    pub fn open(
        destinations: &[Destination],
        stdout_format: Format,
        queue_capacity: usize,
    ) -> Result<QueuedOutputs, OpenError> {
        let opened = destinations
            .iter()
            .map(|destination| {
                open_writer(destination).map_err(|source| OpenError {
                    destination: destination.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stdout_pretty = match stdout_format {
            Format::Pretty { colour } if destinations.contains(&Destination::Stdout) => {
                Some(colour)
            }
            _ => None,
        };
        let mut outputs = QueuedOutputs {
            queues: Vec::with_capacity(opened.len()),
            stdout_pretty,
            batch: Vec::new(),
        };
        for (destination, writer) in destinations.iter().zip(opened) {
            // A batch holds at least one event: never more batches than
            // events. One place more for the only reopen request queued.
            let (sender, receiver) = mpsc::sync_channel(queue_capacity.saturating_add(1));
            let shared = Arc::new(Shared::default());
            let thread = {
                let destination = destination.clone();
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("output {destination}"))
                    .spawn(move || write_queued(&destination, writer, receiver, &shared))
            };
            let writer = thread.map_err(|source| OpenError {
                destination: destination.clone(),
                source,
            })?;
            outputs.queues.push(Queue {
                destination: destination.clone(),
                sender: Some(sender),
                capacity: queue_capacity,
                shared,
                writer: Some(writer),
            });
        }
        Ok(outputs)
    }

    /// Sends the events rendered since the last flush to every writer, or
    /// counts them dropped where the queue has no room for them.
    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch: Batch = Arc::new(std::mem::take(&mut self.batch));
        let events = batch.len();
        for queue in &self.queues {
            // Counted before the send, so the writer never takes more than
            // was counted.
            let waiting = queue.shared.waiting.fetch_add(events, Ordering::AcqRel);
            let sent = (waiting == 0 || waiting + events <= queue.capacity)
                && queue.sender.as_ref().is_some_and(|sender| {
                    sender.try_send(Request::Write(Arc::clone(&batch))).is_ok()
                });
            if !sent {
                queue.shared.waiting.fetch_sub(events, Ordering::AcqRel);
                queue
                    .shared
                    .dropped
                    .fetch_add(events as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Sink for QueuedOutputs {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        let (severity, kind) = match &event.body {
            EventBody::Alert(alert) => (alert.alert.severity.into(), "alert"),
            EventBody::Handshake(_) => (SyslogSeverity::Informational, "handshake"),
            EventBody::Loss { .. } => (SyslogSeverity::Warning, "loss"),
            EventBody::Stats { .. } => (SyslogSeverity::Informational, "stats"),
        };
        self.batch.push(Rendered {
            json_line: json_line(event)?,
            pretty: self
                .stdout_pretty
                .map(|colour| pretty::render(event, colour)),
            severity,
            kind,
        });
        Ok(())
    }

    fn exchange(&mut self, exchange: &Exchange) -> io::Result<()> {
        self.batch.push(Rendered {
            json_line: json_line(&ExchangeRecord(exchange))?,
            pretty: None,
            severity: SyslogSeverity::Informational,
            kind: "exchange",
        });
        Ok(())
    }

    /// Hands the batch to the writers, which write through.
    fn flush(&mut self) -> io::Result<()> {
        self.send_batch();
        Ok(())
    }

    /// Asks every file output's writer to open its file again, after the
    /// events sent before; the writer logs how that went. Names each output
    /// that cannot be asked.
    fn reopen(&mut self) -> io::Result<()> {
        let failures: Vec<String> = self
            .queues
            .iter()
            .filter(|queue| matches!(queue.destination, Destination::File(_)))
            .filter_map(|queue| queue.request_reopen().err())
            .collect();
        match failures.is_empty() {
            true => Ok(()),
            false => Err(io::Error::other(failures.join("; "))),
        }
    }

    fn dropped(&self) -> u64 {
        self.queues
            .iter()
            .map(|queue| queue.shared.dropped.load(Ordering::Relaxed))
            .sum()
    }
}

impl Queue {
    /// Queues a reopen request, unless one is queued already.
    fn request_reopen(&self) -> Result<(), String> {
        if self.shared.reopen_pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Never full: the channel holds one request more than the batches
        // `waiting` lets in.
        let queued = self
            .sender
            .as_ref()
            .is_some_and(|sender| sender.try_send(Request::Reopen).is_ok());
        if queued {
            return Ok(());
        }
        self.shared.reopen_pending.store(false, Ordering::Release);
        Err(format!(
            "cannot reopen output {}: its writer has stopped",
            self.destination
        ))
    }
}

impl Drop for QueuedOutputs {
    /// Closes every queue and waits for the writers to write what is left;
    /// a destination that takes nothing for [`DRAIN_DEADLINE`] (a stdout
    /// nobody reads) does not keep the daemon from exiting.
    fn drop(&mut self) {
        self.send_batch();
        for queue in &mut self.queues {
            queue.sender = None;
        }
        let deadline = Instant::now() + DRAIN_DEADLINE;
        for queue in &mut self.queues {
            let Some(writer) = queue.writer.take() else {
                continue;
            };
            while !writer.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if !writer.is_finished() {
                tracing::error!(output = %queue.destination, "the output took no event for {DRAIN_DEADLINE:?} at shutdown; the events still queued for it are lost");
            } else if writer.join().is_err() {
                tracing::error!(output = %queue.destination, "the output's writer panicked");
            }
        }
    }
}

fn open_writer(destination: &Destination) -> io::Result<Writer> {
    Ok(match destination {
        Destination::Stdout => Writer::Stdout,
        Destination::File(path) => Writer::File(AppendFile::open(path)?),
        Destination::Syslog(socket) => Writer::Syslog(SyslogSocket::connect(socket)?),
    })
}

impl Writer {
    /// What a stream destination writes for each event; None for syslog,
    /// which sends each event as a datagram of its own.
    fn stream_text(&self) -> Option<fn(&Rendered) -> &str> {
        match self {
            Writer::Stdout => {
                Some(|rendered| rendered.pretty.as_ref().unwrap_or(&rendered.json_line))
            }
            Writer::File(_) => Some(|rendered| &rendered.json_line),
            Writer::Syslog(_) => None,
        }
    }

    /// How many of `events` (at least one) go out in the next write: for a
    /// stream, the whole lines that fit in [`STREAM_WRITE_BYTES`].
    fn next_write_len(&self, events: &[Rendered]) -> usize {
        let Some(text) = self.stream_text() else {
            return 1;
        };
        let mut bytes = 0;
        let fitting = events
            .iter()
            .take_while(|rendered| {
                bytes += text(rendered).len();
                bytes <= STREAM_WRITE_BYTES
            })
            .count();
        fitting.max(1)
    }

    /// Writes `events` in one write (see [`Writer::next_write_len`]);
    /// `buffer` is scratch space kept between writes.
    fn write(&mut self, events: &[Rendered], buffer: &mut Vec<u8>) -> Result<(), NotWritten> {
        if let Some(text) = self.stream_text() {
            buffer.clear();
            for rendered in events {
                buffer.extend_from_slice(text(rendered).as_bytes());
            }
        }
        let none_written = |error| NotWritten {
            events: events.len(),
            error,
        };
        match self {
            Writer::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout
                    .write_all(buffer)
                    .and_then(|()| stdout.flush())
                    .map_err(none_written)
            }
            Writer::File(file) => file.write_lines(buffer).map_err(|failure| NotWritten {
                events: events.len() - failure.whole_lines,
                error: failure.error,
            }),
            Writer::Syslog(socket) => events
                .iter()
                .try_for_each(|rendered| {
                    let json = rendered.json_line.trim_end_matches('\n');
                    socket.send(rendered.severity, rendered.kind, json)
                })
                .map_err(none_written),
        }
    }

    /// SIGHUP: a file output opens its file again; the others have none.
    fn reopen(&mut self, destination: &Destination) {
        let Writer::File(file) = self else {
            return;
        };
        match file.reopen() {
            Ok(()) => tracing::info!("SIGHUP: reopened output {destination}"),
            Err(error) => tracing::warn!(
                "SIGHUP: cannot reopen output {destination}: {error}; it keeps writing to its old file"
            ),
        }
    }
}

/// The events of a write that its destination did not take, and why.
struct NotWritten {
    events: usize,
    error: io::Error,
}

/// A writer thread: until the queue is closed and empty. A failing
/// destination is logged when it starts and stops failing, not per event.
fn write_queued(
    destination: &Destination,
    mut writer: Writer,
    queue: Receiver<Request>,
    shared: &Shared,
) {
    // Started before the daemon drops its capabilities; a writer needs none.
    if let Err(error) = capabilities::drop_all() {
        tracing::warn!(output = %destination, %error, "the output's writer keeps its capabilities");
    }
    let mut failing = false;
    let mut buffer = Vec::new();
    for request in queue {
        let batch = match request {
            Request::Write(batch) => batch,
            Request::Reopen => {
                shared.reopen_pending.store(false, Ordering::Release);
                writer.reopen(destination);
                continue;
            }
        };
        shared.waiting.fetch_sub(batch.len(), Ordering::AcqRel);
        let mut unwritten = &batch[..];
        while !unwritten.is_empty() {
            let (events, rest) = unwritten.split_at(writer.next_write_len(unwritten));
            unwritten = rest;
            match writer.write(events, &mut buffer) {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(output = %destination, "the output takes events again");
                }
                Ok(()) => {}
                Err(NotWritten { events, error }) => {
                    shared.dropped.fetch_add(events as u64, Ordering::Relaxed);
                    if !failing {
                        failing = true;
                        tracing::warn!(output = %destination, %error, "events were not written; until the output takes events again they are dropped and counted in `loss` events");
                    }
                }
            }
        }
    }
}

fn json_line(value: &impl Serialize) -> io::Result<String> {
    let mut line = Vec::with_capacity(JSON_LINE_CAPACITY);
    serde_json::to_writer(&mut line, value)?;
    line.push(b'\n');
    String::from_utf8(line).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use std::os::unix::{fs::FileTypeExt, net::UnixDatagram};

    use super::*;
    use crate::events::{Event, LossCounters};

    fn loss_event(n: u64) -> Event {
        Event::loss(
            1_795_677_188_420_039_999,
            "sensor",
            LossCounters {
                kernel_drops: n,
                ..LossCounters::default()
            },
        )
    }

    /// A syslog socket nobody reads: a destination that blocks once its
    /// receive queue is full.
    fn unread_syslog(dir: &std::path::Path) -> (UnixDatagram, Destination) {
        let path = dir.join("unread.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        (server, Destination::Syslog(path))
    }

    fn file_lines(path: &std::path::Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }

    /// The `kernel_drops` of each [`loss_event`] line in the file at `path`.
    fn loss_event_numbers(path: &std::path::Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["loss"]["kernel_drops"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_blocked_destination_drops_and_counts_while_the_others_get_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (blocked, syslog) = unread_syslog(dir.path());
        let path = dir.path().join("events.json");
        let mut outputs =
            QueuedOutputs::open(&[syslog, Destination::File(path.clone())], Format::Json, 64)
                .unwrap();
        let events = 2000;
        for n in 0..events {
            outputs.event(&loss_event(n)).unwrap();
            outputs.flush().unwrap();
            // Let the file writer keep up, well inside its queue; the syslog
            // writer stays stuck.
            if n % 32 == 31 {
                let deadline = Instant::now() + Duration::from_secs(10);
                while file_lines(&path) < n as usize + 1 {
                    assert!(Instant::now() < deadline, "the file writer was held up");
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let dropped = outputs.dropped();
        assert!(dropped > 0, "the unread socket's queue filled up");
        // Read what the syslog destination got, which unblocks its writer.
        let draining = thread::spawn(move || drop(outputs));
        blocked
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut received = 0;
        while blocked.recv(&mut [0; 4096]).is_ok() {
            received += 1;
        }
        draining.join().unwrap();
        assert_eq!(received + dropped, events, "every event sent or counted");
        assert_eq!(
            loss_event_numbers(&path),
            (0..events).collect::<Vec<_>>(),
            "the file got every event, in order"
        );
    }

    #[test]
    fn a_batch_larger_than_one_write_reaches_a_file_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        let mut outputs =
            QueuedOutputs::open(&[Destination::File(path.clone())], Format::Json, 4096).unwrap();
        let events = 1000;
        for n in 0..events {
            outputs.event(&loss_event(n)).unwrap();
        }
        outputs.flush().unwrap();
        drop(outputs);
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert!(bytes > 2 * STREAM_WRITE_BYTES as u64, "{bytes} bytes");
        assert_eq!(loss_event_numbers(&path), (0..events).collect::<Vec<_>>());
    }

    #[test]
    fn a_stream_write_takes_the_whole_lines_that_fit_and_at_least_one() {
        let rendered = |bytes: usize| Rendered {
            json_line: format!("{}\n", "x".repeat(bytes - 1)),
            pretty: None,
            severity: SyslogSeverity::Informational,
            kind: "stats",
        };
        let dir = tempfile::tempdir().unwrap();
        let file = Writer::File(AppendFile::open(&dir.path().join("events.json")).unwrap());
        let third = STREAM_WRITE_BYTES / 3;
        let events: Vec<Rendered> = (0..4).map(|_| rendered(third)).collect();
        assert_eq!(file.next_write_len(&events), 3);
        assert_eq!(file.next_write_len(&events[3..]), 1);
        let oversized = [rendered(STREAM_WRITE_BYTES + 1), rendered(10)];
        assert_eq!(file.next_write_len(&oversized), 1, "a long line on its own");
        let socket = dir.path().join("syslog.sock");
        let _server = UnixDatagram::bind(&socket).unwrap();
        let syslog = Writer::Syslog(SyslogSocket::connect(&socket).unwrap());
        assert_eq!(syslog.next_write_len(&events), 1, "a datagram per event");
    }

    #[test]
    fn a_full_queue_counts_each_event_it_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (blocked, syslog) = unread_syslog(dir.path());
        // Another sender fills the receive queue first, so the writer blocks
        // on its first event for good.
        let filler = UnixDatagram::unbound().unwrap();
        filler.connect(dir.path().join("unread.sock")).unwrap();
        filler.set_nonblocking(true).unwrap();
        while filler.send(b"filler").is_ok() {}
        let mut outputs = QueuedOutputs::open(&[syslog], Format::Json, 2).unwrap();
        for n in 0..20 {
            outputs.event(&loss_event(n)).unwrap();
            outputs.flush().unwrap();
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            outputs.dropped(),
            17,
            "the writer holds one event and the queue two; the rest are refused"
        );
        drop(blocked);
    }

    #[test]
    fn a_destination_that_cannot_be_opened_is_named() {
        let error = QueuedOutputs::open(
            &[
                Destination::Stdout,
                Destination::File("/nonexistent/dir/events.json".into()),
            ],
            Format::Json,
            4,
        )
        .err()
        .unwrap();
        assert_eq!(
            error.to_string(),
            "cannot open output file:/nonexistent/dir/events.json: No such file or directory (os error 2)"
        );
        let error = QueuedOutputs::open(
            &[Destination::Syslog("/nonexistent/log.sock".into())],
            Format::Json,
            4,
        )
        .err()
        .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("cannot open output syslog:/nonexistent/log.sock: "),
            "{error}"
        );
    }

    /// Sends `numbers` as loss events in one batch.
    fn send(outputs: &mut QueuedOutputs, numbers: std::ops::Range<u64>) {
        for n in numbers {
            outputs.event(&loss_event(n)).unwrap();
        }
        outputs.flush().unwrap();
    }

    /// Waits until the file at `path` holds the loss events `expected`.
    fn wait_for_events(path: &std::path::Path, expected: std::ops::Range<u64>) {
        let expected: Vec<u64> = expected.collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while loss_event_numbers(path) != expected {
            assert!(
                Instant::now() < deadline,
                "{}: {:?}, not {expected:?}",
                path.display(),
                loss_event_numbers(path)
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reopens on another thread, so that a reopen that hangs fails the test
    /// instead of holding it up.
    fn reopen_at_once(outputs: QueuedOutputs) -> QueuedOutputs {
        let (returned, returning) = mpsc::channel();
        thread::spawn(move || {
            let mut outputs = outputs;
            outputs.reopen().unwrap();
            returned.send(outputs).unwrap();
        });
        returning
            .recv_timeout(Duration::from_secs(2))
            .expect("the reopen returned at once")
    }

    /// Two file outputs; one event written, then the first file renamed
    /// to `rotated` and a FIFO put at its path.
    struct FifoAtFirstPath {
        _dir: tempfile::TempDir,
        first: std::path::PathBuf,
        second: std::path::PathBuf,
        rotated: std::path::PathBuf,
        outputs: QueuedOutputs,
    }

    fn fifo_at_first_path() -> FifoAtFirstPath {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.json");
        let second = dir.path().join("second.json");
        let rotated = dir.path().join("first.json.1");
        let mut outputs = QueuedOutputs::open(
            &[
                Destination::File(first.clone()),
                Destination::File(second.clone()),
            ],
            Format::Json,
            64,
        )
        .unwrap();
        send(&mut outputs, 0..1);
        wait_for_events(&first, 0..1);
        std::fs::rename(&first, &rotated).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(&first)
            .status()
            .unwrap();
        assert!(status.success());
        FifoAtFirstPath {
            _dir: dir,
            first,
            second,
            rotated,
            outputs,
        }
    }

    #[test]
    fn a_reopen_onto_a_fifo_returns_at_once_and_every_output_keeps_getting_events() {
        let FifoAtFirstPath {
            _dir,
            first,
            second,
            rotated,
            outputs,
        } = fifo_at_first_path();
        let mut outputs = reopen_at_once(outputs);
        send(&mut outputs, 1..10);
        wait_for_events(&second, 0..10);
        wait_for_events(&rotated, 0..10);
        drop(outputs);
        assert!(
            std::fs::metadata(&first).unwrap().file_type().is_fifo(),
            "the FIFO was left alone"
        );
    }

    #[test]
    fn once_the_fifo_gives_way_to_a_file_a_further_reopen_writes_to_it() {
        let FifoAtFirstPath {
            _dir,
            first,
            second,
            rotated,
            outputs,
        } = fifo_at_first_path();
        let mut outputs = reopen_at_once(outputs);
        send(&mut outputs, 1..2);
        std::fs::remove_file(&first).unwrap();
        std::fs::write(&first, "").unwrap();
        let mut outputs = reopen_at_once(outputs);
        send(&mut outputs, 2..3);
        wait_for_events(&first, 2..3);
        wait_for_events(&rotated, 0..2);
        wait_for_events(&second, 0..3);
    }
}
