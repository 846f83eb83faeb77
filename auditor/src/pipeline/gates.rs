//! The kernel's payload gates as the HTTP layer asks for them: each request
//! turned into a command in the sequence numbers the kernel sees, and every
//! gate opened again when its connection ends (its ports may be reused).

use std::{collections::HashMap, net::SocketAddr};

use foldhash::fast::RandomState;

use crate::{
    http::{GateUntil, PayloadGateRequest},
    reassembly::Reassembler,
    stream::ConnectionId,
};

/// A change to the kernel's payload gate for the direction `src` → `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateCommand {
    /// Stop copying payload, until `resume_seq` or for good.
    Close {
        src: SocketAddr,
        dst: SocketAddr,
        resume_seq: Option<u32>,
    },
    /// The connection ended: copy this direction again.
    Open { src: SocketAddr, dst: SocketAddr },
}

#[derive(Default)]
pub struct PayloadGates {
    /// Connections with a gate closed, by id (looked up for every gate
    /// request and every close: foldhash rather than SipHash, as for the
    /// HTTP layer's table).
    closed: HashMap<ConnectionId, (SocketAddr, SocketAddr), RandomState>,
    commands: Vec<GateCommand>,
}

impl PayloadGates {
    /// A gate until a stream offset needs the connection still tracked by
    /// `reassembler`, which knows its sequence numbers; otherwise it is
    /// dropped.
    pub fn request(&mut self, request: PayloadGateRequest, reassembler: &Reassembler) {
        let resume_seq = match request.until {
            GateUntil::Forever => None,
            GateUntil::Offset(offset) => {
                match reassembler.seq_of(request.src, request.dst, offset) {
                    Some(seq) => Some(seq),
                    None => return,
                }
            }
        };
        self.closed
            .insert(request.connection, (request.src, request.dst));
        self.commands.push(GateCommand::Close {
            src: request.src,
            dst: request.dst,
            resume_seq,
        });
    }

    /// The connection `id` ended: its gates, if any, open both ways.
    pub fn connection_closed(&mut self, id: ConnectionId) {
        if let Some((a, b)) = self.closed.remove(&id) {
            self.commands.push(GateCommand::Open { src: a, dst: b });
            self.commands.push(GateCommand::Open { src: b, dst: a });
        }
    }

    /// The commands for the live capture, in the order they arose.
    pub fn take_commands(&mut self) -> std::vec::Drain<'_, GateCommand> {
        self.commands.drain(..)
    }
}
