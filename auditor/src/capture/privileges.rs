//! Which of the capabilities the kernel program needs this process lacks.

use std::fmt;

/// A Linux capability the capture needs, with its bit in `CapEff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    bit: u32,
}

pub const CAP_NET_ADMIN: Capability = Capability {
    name: "CAP_NET_ADMIN",
    bit: 12,
};
pub const CAP_SYS_ADMIN: Capability = Capability {
    name: "CAP_SYS_ADMIN",
    bit: 21,
};
pub const CAP_PERFMON: Capability = Capability {
    name: "CAP_PERFMON",
    bit: 38,
};
pub const CAP_BPF: Capability = Capability {
    name: "CAP_BPF",
    bit: 39,
};

/// Loading a TC program and reading its maps needs CAP_BPF (or the older
/// catch-all CAP_SYS_ADMIN), CAP_PERFMON for the verifier to accept it as a
/// tracing-capable program, and CAP_NET_ADMIN to attach it to interfaces.
pub const REQUIRED: [Capability; 3] = [CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN];

/// The required capabilities missing from the effective set `cap_eff`.
pub fn missing_from(cap_eff: u64) -> Vec<Capability> {
    let has = |cap: Capability| cap_eff & (1 << cap.bit) != 0;
    let granted_by_sys_admin = |cap: Capability| cap != CAP_NET_ADMIN && has(CAP_SYS_ADMIN);
    REQUIRED
        .into_iter()
        .filter(|&cap| !(has(cap) || granted_by_sys_admin(cap)))
        .collect()
}

/// The required capabilities this process lacks, read from `/proc/self/status`.
pub fn missing() -> std::io::Result<Vec<Capability>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let cap_eff = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::other("/proc/self/status has no readable CapEff line"))?;
    Ok(missing_from(cap_eff))
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> u64 {
        caps.iter().fold(0, |acc, cap| acc | 1 << cap.bit)
    }

    #[test]
    fn root_lacks_nothing() {
        assert!(missing_from(u64::MAX).is_empty());
    }

    #[test]
    fn unprivileged_lacks_all_three() {
        assert_eq!(missing_from(0), REQUIRED);
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_and_perfmon_but_not_net_admin() {
        assert_eq!(missing_from(set(&[CAP_SYS_ADMIN])), [CAP_NET_ADMIN]);
        assert!(missing_from(set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN])).is_empty());
        assert_eq!(missing_from(set(&[CAP_BPF, CAP_NET_ADMIN])), [CAP_PERFMON]);
    }
}
