//! Dropping capabilities after start-up. Loading the program needs CAP_BPF,
//! CAP_PERFMON and CAP_NET_ADMIN; once it is loaded and attached, the daemon
//! needs none. It reads the ring buffer and updates the maps through
//! descriptors it already holds, and attaching to another interface on
//! reload creates a TCX link from the program's descriptor: on Linux 6.18
//! none of these checks a capability (the checks are at load time).
//!
//! Capabilities belong to a thread: [`drop_all`] must run on the thread that
//! keeps working with the program, and on every thread started before it
//! (the output writers drop theirs as they start).

use caps::{errors::CapsError, CapSet, Capability};

#[derive(Debug, thiserror::Error)]
#[error("cannot drop the daemon's capabilities: {0}")]
pub struct PrivilegeError(#[from] CapsError);

/// Empties every capability set of the calling thread. Returns whether the
/// bounding set was emptied too: that needs CAP_SETPCAP, which a non-root
/// daemon given file capabilities lacks; the bounding set only limits what
/// an exec could gain, and the daemon runs no other program.
pub fn drop_all() -> Result<bool, PrivilegeError> {
    caps::clear(None, CapSet::Ambient)?;
    let bounding_cleared = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)?;
    if bounding_cleared {
        caps::clear(None, CapSet::Bounding)?;
    }
    caps::clear(None, CapSet::Inheritable)?;
    caps::clear(None, CapSet::Effective)?;
    caps::clear(None, CapSet::Permitted)?;
    Ok(bounding_cleared)
}
