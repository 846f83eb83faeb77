//! The kernel program loaded in the calling thread's namespace, with its
//! records read back.

use std::{collections::BTreeMap, thread, time::Duration};

use auditor::{
    capture::{interfaces, Capture, CaptureOptions, SegmentReader},
    segment::Segment,
    source::{Input, Source},
};
use auditor_common::Counter;

pub struct Session {
    pub capture: Capture,
    reader: SegmentReader,
    // Declared last: the reader deregisters from the runtime when dropped.
    _runtime: tokio::runtime::Runtime,
}

impl Session {
    /// Loads the program, watches `ports` and attaches to `interface`.
    pub fn start(interface: &str, ports: &[u16]) -> Session {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut capture = Capture::load(CaptureOptions::default()).expect("load the eBPF program");
        for &port in ports {
            capture.watch_port(port).expect("watch port");
        }
        let available = interfaces::list().expect("list interfaces");
        let chosen = interfaces::select(&available, &[interface.to_owned()]).expect("interface");
        capture.attach(&chosen[0]).expect("attach");
        let reader = runtime
            .block_on(async { capture.take_segment_reader() })
            .expect("reader")
            .expect("a fresh capture has its reader");
        Session {
            capture,
            reader,
            _runtime: runtime,
        }
    }

    /// Every record emitted so far. The kernel writes records while the
    /// packets pass, so once the traffic is over a short wait is enough.
    pub fn records(&mut self) -> Vec<Segment> {
        thread::sleep(Duration::from_millis(100));
        let mut decoded = Vec::new();
        self.reader
            .feed(|input| {
                match input {
                    Input::Segment(segment) => decoded.push(segment.to_owned_segment()),
                    other => panic!("every record decodes: {other:?}"),
                }
                Ok(())
            })
            .expect("nothing fails");
        decoded
    }

    pub fn counters(&self) -> BTreeMap<Counter, u64> {
        self.capture.counters().expect("counters")
    }
}
