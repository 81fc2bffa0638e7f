#![deny(unsafe_code)]
//! Rampart's dataplane: everything a worker lcore runs.
//!
//! - [`dpdk`]: the only safe layer over `dpdk-sys`; the only module allowed `unsafe`.
//! - [`wire`]: zero-copy packet views and flow-key extraction.
//! - [`pipeline`]: the per-packet stages, over byte slices so they run without EAL.
//! - [`track`]: the stateful stage (fragments, raw table, conntrack, filter, confirmation).
//! - [`verdict`]: forward or drop, with the drop reasons that index counters.
//! - [`stats`]: per-worker counters, single writer, read by the control thread.
//! - [`router`]: router mode's per-packet stage (ARP/NDP, forwarding, ICMP errors).
//! - [`worker`]: the poll loop on an lcore.

pub mod classify;
pub mod conntrack;
#[allow(unsafe_code)]
pub mod dpdk;
pub mod filter;
pub mod mangle;
pub mod nat;
pub mod pipeline;
pub mod rcu;
pub mod reject;
pub mod route;
pub mod router;
pub mod stats;
pub mod steer;
pub mod track;
pub mod verdict;
pub mod wire;
pub mod worker;

/// The DPDK version the bindings were generated against.
pub const DPDK_VERSION: &str = dpdk_sys::DPDK_VERSION;
