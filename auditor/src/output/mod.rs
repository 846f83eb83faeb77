//! Where events go. The pipeline hands each event (or, with `--exchanges`,
//! each exchange) to a [`Sink`]: a [`LineWriter`] writes them to one stream,
//! [`QueuedOutputs`] to every destination of `auditor run`.

mod destination;
mod file;
mod queued;
mod syslog;

use std::io::{self, Write};

use serde::Serialize;

pub use destination::{Destination, SYSLOG_SOCKET};
pub use queued::{OpenError, QueuedOutputs};

use crate::{
    events::{pretty, Event, ExchangeRecord},
    http::Exchange,
};

/// Receives what the pipeline produces, in order.
pub trait Sink {
    fn event(&mut self, event: &Event) -> io::Result<()>;
    /// An exchange, when the pipeline runs without rules (`--exchanges`).
    fn exchange(&mut self, exchange: &Exchange) -> io::Result<()>;
    /// The end of a batch: whatever is buffered should reach its destination.
    fn flush(&mut self) -> io::Result<()>;
    /// SIGHUP: files are opened again at their paths, after logrotate moved
    /// them. A sink without files has nothing to do.
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Events dropped so far because a destination could not keep up or
    /// failed, for `loss` events. A sink that returns its write errors drops
    /// nothing.
    fn dropped(&self) -> u64 {
        0
    }
}

/// How events are written for a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// A few lines per event for a person; `colour` on a terminal.
    Pretty { colour: bool },
}

/// Writes everything to one stream in one [`Format`]; exchanges are always
/// JSON lines.
pub struct LineWriter<W: Write> {
    writer: W,
    format: Format,
    /// The JSON line being written, kept for the next one. serde_json
    /// writes each token on its own: into a `Vec` that is cheaper than
    /// through a `BufWriter`, and the line then goes to `writer` at once.
    line: Vec<u8>,
}

impl<W: Write> LineWriter<W> {
    pub fn new(writer: W, format: Format) -> LineWriter<W> {
        LineWriter {
            writer,
            format,
            line: Vec::new(),
        }
    }

    fn json_line(&mut self, value: &impl Serialize) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.writer.write_all(&self.line)
    }
}

impl<W: Write> Sink for LineWriter<W> {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        match self.format {
            Format::Json => self.json_line(event),
            Format::Pretty { colour } => self
                .writer
                .write_all(pretty::render(event, colour).as_bytes()),
        }
    }

    fn exchange(&mut self, exchange: &Exchange) -> io::Result<()> {
        self.json_line(&ExchangeRecord(exchange))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}
