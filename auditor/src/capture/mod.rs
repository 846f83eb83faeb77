//! Live capture: loads the kernel program, attaches it to interfaces, and
//! reads its ring buffer: the live [`Source`] of TCP segments.

pub mod interfaces;
pub mod privileges;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use auditor_common::{
    gate_mode, wakeup_after_bytes, Counter, FlowKey, PayloadGate, PortFilter, GATES_ACTIVE,
    GLOBAL_MAX_PAYLOAD_PER_SEGMENT, GLOBAL_WAKEUP_AFTER_BYTES, MAP_COUNTERS, MAP_GATES_ACTIVE,
    MAP_PAYLOAD_GATES, MAP_PORT_FILTER, MAP_SEGMENTS, MAP_WATCHED_PORTS, PORT_WATCHED,
    PROGRAM_EGRESS, PROGRAM_INGRESS, RING_BUFFER_BYTES, SEGMENT_CAPTURE_MAX,
};
use aya::{
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf},
    programs::{tc::SchedClassifierLink, ProgramError, SchedClassifier, TcAttachType},
    Ebpf, EbpfError, EbpfLoader,
};
use tokio::io::unix::AsyncFd;

pub use self::interfaces::Interface;
use self::privileges::Capability;
use crate::{
    segment::SegmentRef,
    source::{Fed, Input, Source, SourceLoss},
};

/// What the ring buffer could not deliver, by the kernel program's
/// `counters` (from [`Capture::counters`]).
pub fn source_loss(counters: &BTreeMap<Counter, u64>) -> SourceLoss {
    SourceLoss {
        records_dropped: counters[&Counter::RingBufferFull],
        records_truncated: counters[&Counter::RecordsTruncated],
    }
}

/// The kernel program, built by `auditor/build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/auditor"));

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "live capture needs {}; missing: {}. Run as root, or grant them with `setcap cap_bpf,cap_perfmon,cap_net_admin+ep` on the auditor binary",
        privileges::REQUIRED.map(|c| c.name).join(", "),
        .0.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    )]
    MissingPrivileges(Vec<Capability>),
    #[error("this build of auditor has no eBPF object (it was built with AYA_BUILD_SKIP); rebuild it with `cargo xtask build`")]
    MissingObject,
    #[error(
        "the kernel's verifier rejected program `{program}` ({io_error}). Verifier log:\n{log}"
    )]
    VerifierRejected {
        program: &'static str,
        io_error: io::Error,
        log: String,
    },
    #[error("cannot attach to interface `{interface}` ({direction}): {source}")]
    Attach {
        interface: String,
        direction: &'static str,
        source: ProgramError,
    },
    #[error("cannot load the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("eBPF program `{program}`: {source}")]
    Program {
        program: &'static str,
        source: ProgramError,
    },
    #[error("eBPF map `{map}`: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("eBPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

#[derive(Clone, Copy, Debug)]
pub struct CaptureOptions {
    /// Let the kernel program log diagnostics through aya-log.
    pub kernel_debug_log: bool,
    /// Payload bytes the kernel program copies per TCP segment; it never
    /// copies more than `SEGMENT_CAPTURE_MAX`.
    pub max_payload_per_segment: u32,
    /// Size of the segment ring buffer: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            kernel_debug_log: false,
            max_payload_per_segment: SEGMENT_CAPTURE_MAX as u32,
            ring_buffer_bytes: RING_BUFFER_BYTES,
        }
    }
}

/// Where the kernel program is attached on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub interface: String,
    pub index: u32,
    /// On loopback every packet crosses egress and then ingress, so only
    /// ingress is hooked there: each segment is recorded once.
    pub hooks: Vec<TcAttachType>,
}

/// An attachment and the links that hold it: dropping them detaches.
struct AttachedInterface {
    attachment: Attachment,
    _links: Vec<SchedClassifierLink>,
}

/// The loaded kernel program and its maps. Dropping it detaches the program
/// from every interface.
pub struct Capture {
    ebpf: Ebpf,
    watched_ports: Array<MapData, u8>,
    /// The summary of `watched` the kernel reads before `watched_ports`.
    port_filter: Array<MapData, PortFilter>,
    /// The ports set in `watched_ports`.
    watched: BTreeSet<u16>,
    payload_gates: HashMap<MapData, FlowKey, PayloadGate>,
    /// Set while `gated` is not empty: the kernel looks gates up only then.
    gates_active: Array<MapData, u32>,
    /// The flows this process put a gate on and has not opened since. The
    /// kernel may have removed some (past their resume point, or evicted):
    /// then the flag only stays set longer than needed.
    gated: HashSet<FlowKey>,
    counters: PerCpuArray<MapData, u64>,
    segments: Option<RingBuf<MapData>>,
    ring_buffer_bytes: u32,
    attached: Vec<AttachedInterface>,
}

impl Capture {
    pub fn load(options: CaptureOptions) -> Result<Capture, CaptureError> {
        let missing = privileges::missing()?;
        if !missing.is_empty() {
            return Err(CaptureError::MissingPrivileges(missing));
        }
        if OBJECT.is_empty() {
            return Err(CaptureError::MissingObject);
        }
        let log_level: u8 = if options.kernel_debug_log {
            aya_log::Level::Debug as u8
        } else {
            0
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &log_level, false)
            .override_global(
                GLOBAL_MAX_PAYLOAD_PER_SEGMENT,
                &options.max_payload_per_segment,
                true,
            )
            .override_global(
                GLOBAL_WAKEUP_AFTER_BYTES,
                &wakeup_after_bytes(options.ring_buffer_bytes),
                true,
            )
            .map_max_entries(MAP_SEGMENTS, options.ring_buffer_bytes)
            .load(OBJECT)?;
        if options.kernel_debug_log {
            start_kernel_log(&mut ebpf);
        }
        for program in [PROGRAM_INGRESS, PROGRAM_EGRESS] {
            classifier(&mut ebpf, program)?
                .load()
                .map_err(|error| verifier_error(program, error))?;
        }
        let ring_buffer_bytes = match ebpf.map(MAP_SEGMENTS) {
            Some(Map::RingBuf(map)) => map
                .info()
                .map_err(|source| CaptureError::Map {
                    map: MAP_SEGMENTS,
                    source,
                })?
                .max_entries(),
            _ => return Err(CaptureError::MissingMap(MAP_SEGMENTS)),
        };
        Ok(Capture {
            watched_ports: take_map(&mut ebpf, MAP_WATCHED_PORTS)?,
            port_filter: take_map(&mut ebpf, MAP_PORT_FILTER)?,
            watched: BTreeSet::new(),
            payload_gates: take_map(&mut ebpf, MAP_PAYLOAD_GATES)?,
            gates_active: take_map(&mut ebpf, MAP_GATES_ACTIVE)?,
            gated: HashSet::new(),
            counters: take_map(&mut ebpf, MAP_COUNTERS)?,
            segments: Some(take_map(&mut ebpf, MAP_SEGMENTS)?),
            ring_buffer_bytes,
            attached: Vec::new(),
            ebpf,
        })
    }

    /// The segment ring buffer's size, as the kernel reports it.
    pub fn ring_buffer_bytes(&self) -> u32 {
        self.ring_buffer_bytes
    }

    /// Attaches to `interface` in the calling thread's network namespace.
    pub fn attach(&mut self, interface: &Interface) -> Result<&Attachment, CaptureError> {
        let hooks = if interface.loopback {
            vec![TcAttachType::Ingress]
        } else {
            vec![TcAttachType::Ingress, TcAttachType::Egress]
        };
        let mut links = Vec::with_capacity(hooks.len());
        for &hook in &hooks {
            let (program, direction) = match hook {
                TcAttachType::Egress => (PROGRAM_EGRESS, "egress"),
                _ => (PROGRAM_INGRESS, "ingress"),
            };
            let attach_error = |source| CaptureError::Attach {
                interface: interface.name.clone(),
                direction,
                source,
            };
            let classifier = classifier(&mut self.ebpf, program)?;
            let link_id = classifier
                .attach(&interface.name, hook)
                .map_err(attach_error)?;
            links.push(classifier.take_link(link_id).map_err(attach_error)?);
        }
        self.attached.push(AttachedInterface {
            attachment: Attachment {
                interface: interface.name.clone(),
                index: interface.index,
                hooks,
            },
            _links: links,
        });
        Ok(&self.attached.last().expect("just pushed").attachment)
    }

    /// Detaches the program from the interface with index `index`; returns
    /// whether it was attached there.
    pub fn detach(&mut self, index: u32) -> bool {
        let before = self.attached.len();
        self.attached.retain(|a| a.attachment.index != index);
        self.attached.len() != before
    }

    pub fn attachments(&self) -> impl ExactSizeIterator<Item = &Attachment> {
        self.attached.iter().map(|a| &a.attachment)
    }

    /// Ids of the loaded kernel programs, as `bpftool prog show` lists them.
    pub fn program_ids(&self) -> Result<Vec<u32>, CaptureError> {
        [PROGRAM_INGRESS, PROGRAM_EGRESS]
            .into_iter()
            .map(|name| {
                let program: &SchedClassifier = self
                    .ebpf
                    .program(name)
                    .and_then(|p| p.try_into().ok())
                    .ok_or(CaptureError::Program {
                        program: name,
                        source: ProgramError::NotLoaded,
                    })?;
                let info = program.info().map_err(|source| CaptureError::Program {
                    program: name,
                    source,
                })?;
                Ok(info.id())
            })
            .collect()
    }

    /// Starts copying segments to or from `port`; takes effect at once.
    pub fn watch_port(&mut self, port: u16) -> Result<(), CaptureError> {
        self.set_port(port, PORT_WATCHED)
    }

    /// Stops copying segments to or from `port`; takes effect at once.
    pub fn unwatch_port(&mut self, port: u16) -> Result<(), CaptureError> {
        self.set_port(port, 0)
    }

    /// The table first, then the filter: the kernel reads them the other
    /// way round, so a port it finds in the filter has its table entry.
    fn set_port(&mut self, port: u16, value: u8) -> Result<(), CaptureError> {
        self.watched_ports
            .set(u32::from(port), value, 0)
            .map_err(|source| CaptureError::Map {
                map: MAP_WATCHED_PORTS,
                source,
            })?;
        if value == PORT_WATCHED {
            self.watched.insert(port);
        } else {
            self.watched.remove(&port);
        }
        self.port_filter
            .set(0, PortFilter::of(self.watched.iter().copied()), 0)
            .map_err(|source| CaptureError::Map {
                map: MAP_PORT_FILTER,
                source,
            })
    }

    /// Stops copying the payload of one direction of a flow, for good or
    /// until the stream reaches `resume_seq`. Flags and lengths are still
    /// reported.
    pub fn close_payload(
        &mut self,
        flow: FlowKey,
        resume_seq: Option<u32>,
    ) -> Result<(), CaptureError> {
        let gate = match resume_seq {
            Some(resume_seq) => PayloadGate {
                mode: gate_mode::CLOSED_UNTIL,
                resume_seq,
            },
            None => PayloadGate {
                mode: gate_mode::CLOSED,
                resume_seq: 0,
            },
        };
        // The flag first: a gate the kernel cannot see would be ignored.
        if self.gated.is_empty() {
            self.set_gates_active(GATES_ACTIVE)?;
        }
        self.gated.insert(flow);
        self.payload_gates
            .insert(flow, gate, 0)
            .map_err(|source| CaptureError::Map {
                map: MAP_PAYLOAD_GATES,
                source,
            })
    }

    /// Copies a flow direction's payload again; no-op when it was not closed.
    pub fn open_payload(&mut self, flow: FlowKey) -> Result<(), CaptureError> {
        match self.payload_gates.remove(&flow) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            // The kernel removes a gate itself once the stream passes its resume point.
            Err(MapError::SyscallError(error))
                if error.io_error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CaptureError::Map {
                    map: MAP_PAYLOAD_GATES,
                    source,
                })
            }
        }
        // The flag last, once no gate of this process is left in the map.
        if self.gated.remove(&flow) && self.gated.is_empty() {
            self.set_gates_active(0)?;
        }
        Ok(())
    }

    fn set_gates_active(&mut self, value: u32) -> Result<(), CaptureError> {
        self.gates_active
            .set(0, value, 0)
            .map_err(|source| CaptureError::Map {
                map: MAP_GATES_ACTIVE,
                source,
            })
    }

    /// The kernel program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<Counter, u64>, CaptureError> {
        Counter::ALL
            .into_iter()
            .map(|counter| {
                let per_cpu = self.counters.get(&(counter as u32), 0).map_err(|source| {
                    CaptureError::Map {
                        map: MAP_COUNTERS,
                        source,
                    }
                })?;
                Ok((counter, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The reader of the segment ring buffer; `None` once taken.
    pub fn take_segment_reader(&mut self) -> Result<Option<SegmentReader>, CaptureError> {
        self.segments
            .take()
            // SAFETY: the ring buffer owns its descriptor, and the AsyncFd
            // owns the ring buffer for as long as it is registered.
            .map(|ring| {
                Ok(SegmentReader {
                    ring: unsafe { AsyncFd::register(ring).map_err(io::Error::from)? },
                    clock_offset_ns: monotonic_to_unix_offset_ns()?,
                })
            })
            .transpose()
    }
}

/// The `PAYLOAD_GATES` key of the direction `src` → `dst`.
pub fn flow_key(src: SocketAddr, dst: SocketAddr) -> FlowKey {
    FlowKey {
        src_addr: address_bytes(src.ip()),
        dst_addr: address_bytes(dst.ip()),
        src_port: src.port(),
        dst_port: dst.port(),
    }
}

/// Addresses as the kernel program stores them: IPv4 in the first four bytes.
fn address_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// How often the reader looks for records the kernel program did not wake it
/// for (it wakes it only once many wait): the longest a record waits.
pub const RING_POLL: Duration = Duration::from_millis(20);

/// Reads records from the kernel's ring buffer as they arrive: the live
/// capture's [`Source`].
pub struct SegmentReader {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Unix time minus CLOCK_MONOTONIC, taken when the reader was made.
    clock_offset_ns: u64,
}

impl SegmentReader {
    /// Waits until the kernel program wakes the reader (many records wait)
    /// or [`RING_POLL`] passed; [`Source::feed`] then takes what waits.
    pub async fn wait(&mut self) -> io::Result<()> {
        if let Ok(guard) = tokio::time::timeout(RING_POLL, self.ring.readable_mut()).await {
            // Records that come after this are found by the next wait: a
            // wake-up, or the next poll.
            guard?.clear_ready();
        }
        Ok(())
    }
}

impl Source for SegmentReader {
    /// Every record waiting, decoded, its payload borrowed from the ring
    /// buffer (freed for the kernel once `accept` returns). The ring never
    /// ends: [`Self::wait`] says when to feed again.
    fn feed(&mut self, mut accept: impl FnMut(Input<'_>) -> io::Result<()>) -> io::Result<Fed> {
        let ring = self.ring.get_mut();
        while let Some(record) = ring.next() {
            accept(match SegmentRef::decode(&record, self.clock_offset_ns) {
                Ok(segment) => Input::Segment(segment),
                Err(error) => Input::Undecodable(error),
            })?;
        }
        Ok(Fed::More)
    }
}

/// What to add to a CLOCK_MONOTONIC time (the kernel's `bpf_ktime_get_ns`)
/// to get Unix time.
fn monotonic_to_unix_offset_ns() -> io::Result<u64> {
    use nix::time::{clock_gettime, ClockId};
    let nanos = |clock| -> io::Result<u64> {
        let time = clock_gettime(clock).map_err(io::Error::from)?;
        Ok(time.tv_sec() as u64 * 1_000_000_000 + time.tv_nsec() as u64)
    };
    let unix = nanos(ClockId::CLOCK_REALTIME)?;
    let monotonic = nanos(ClockId::CLOCK_MONOTONIC)?;
    Ok(unix.wrapping_sub(monotonic))
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, CaptureError> {
    let program = ebpf.program_mut(name).ok_or(CaptureError::Program {
        program: name,
        source: ProgramError::NotLoaded,
    })?;
    program.try_into().map_err(|source| CaptureError::Program {
        program: name,
        source,
    })
}

fn take_map<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, CaptureError> {
    let map = ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))?;
    T::try_from(map).map_err(|source| CaptureError::Map { map: name, source })
}

fn verifier_error(program: &'static str, error: ProgramError) -> CaptureError {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => CaptureError::VerifierRejected {
            program,
            io_error,
            log: verifier_log.to_string(),
        },
        source => CaptureError::Program { program, source },
    }
}

/// Forwards the kernel program's aya-log records to the `log` facade, which
/// tracing-subscriber picks up.
fn start_kernel_log(ebpf: &mut Ebpf) {
    match aya_log::EbpfLogger::init(ebpf) {
        // SAFETY: the logger owns its ring buffer's descriptor, and the
        // AsyncFd owns the logger for as long as it is registered.
        Ok(logger) => {
            match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
            {
                Ok(mut logger) => {
                    tokio::spawn(async move {
                        loop {
                            let Ok(mut guard) = logger.readable_mut().await else {
                                return;
                            };
                            guard.get_inner_mut().flush();
                            guard.clear_ready();
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "kernel log unavailable"),
            }
        }
        Err(error) => tracing::warn!(%error, "kernel log unavailable"),
    }
}
