//! Benchmark baseline, never loaded by the daemon: a TC classifier that does
//! nothing and lets every packet continue (`TC_ACT_UNSPEC`).
//!
//! `cargo xtask bench --only kernel` attaches it beside the daemon's programs,
//! at the same hooks and for the same traffic, to measure the floor that
//! every program pays per packet when the kernel's BPF statistics are on:
//! the run-time accounting itself (a clock read around each run, a paravirt
//! clock on a virtual machine) and the call into the program. The daemon's
//! figures are reported both as measured and net of it. `--only overhead`
//! attaches it alone for a third kind of wrk run: what proxied traffic loses
//! to any program at those hooks.
#![no_std]
#![no_main]

use aya_ebpf::{macros::classifier, programs::TcContext};

/// Let the packet continue as if no program were attached (required under TCX).
const TC_ACT_UNSPEC: i32 = -1;

/// Its name is the one `xtask/src/bench/kernel.rs` loads (`EMPTY_PROGRAM`).
#[classifier]
pub fn empty_program(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
