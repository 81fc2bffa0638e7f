//! The one safe layer over `dpdk-sys`. Every `unsafe` block in Rampart outside `dpdk-sys` lives in
//! this module and carries a `SAFETY:` comment naming the precondition it relies on. That makes it
//! also the home of the CPU-level helpers that need `unsafe`: [`prefetch`], the classifier's
//! SIMD kernels with their run-time selection ([`simd`]), and the memory of large tables, on
//! huge pages where the system has them ([`TableMemory`]), and the one question put to the
//! C library ([`utc_offset_s`]).
//!
//! Invariants:
//! - EAL is initialised at most once per process ([`Eal`]), and everything else here is only
//!   reachable through a live `&Eal`.
//! - An [`Mbuf`] owns exactly one reference to an `rte_mbuf`; dropping it frees the mbuf, handing it
//!   to TX moves it out. Raw pointers never leave this module.
//! - Drop order is the caller's to keep: ports are closed before the mempool that feeds them is
//!   freed ([`Mempool`] refuses to free while mbufs are still in use).

mod acl;
mod burst;
mod eal;
mod host;
mod lcore;
mod mbuf;
mod mempool;
mod pages;
mod port;
mod ring;
pub mod simd;
mod txbatch;

pub use acl::{heap_allocated_bytes, AclAlgorithm, AclClassifier, AclConfig, AclStats};
pub use burst::{Flushed, RxBurst, TxBuffer, MAX_BURST};
pub use eal::{tsc, tsc_hz, Eal};
pub use host::utc_offset_s;
pub use lcore::{LaunchError, LcoreId};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use pages::{transparent_huge_bytes, HugePages, PageKind, PageUse, TableMemory};
pub use port::{Port, PortConfig, PortId, PortStats, QueueId, RxQueue, TxQueue};
pub use ring::{handoff_ring, HandedOff, HandoffBuffer, RingRx, RingTx};
pub use txbatch::TxBatch;

use std::ffi::CStr;

/// Errors from DPDK set-up calls, with the DPDK error code and its text.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("EAL initialisation failed: {msg} (rte_errno {code})")]
    EalInit { code: i32, msg: String },
    #[error("EAL is already initialised in this process")]
    EalTwice,
    #[error("EAL argument contains a NUL byte: {0:?}")]
    BadArgument(String),
    #[error("cannot create mempool {name:?}: {msg} (rte_errno {code})")]
    Mempool {
        name: String,
        code: i32,
        msg: String,
    },
    #[error(
        "no DPDK port named {0:?} (is the device given with --vdev or -a, and its driver loaded?)"
    )]
    NoSuchPort(String),
    #[error("port {port}: {op} failed: {msg} (code {code})")]
    Port {
        port: u16,
        op: &'static str,
        code: i32,
        msg: String,
    },
    #[error("port {port}: {what}")]
    PortLimit { port: u16, what: String },
    #[error("rte_acl: {op} failed: {msg} (code {code})")]
    Acl {
        op: &'static str,
        code: i32,
        msg: String,
    },
    #[error("rte_acl: too many rules (priorities are below 2^29)")]
    AclTooManyRules,
    #[error("packet capture (pdump) unavailable: {msg} (rte_errno {code})")]
    Capture { code: i32, msg: String },
    #[error("cannot create ring {name:?}: {msg} (rte_errno {code})")]
    Ring {
        name: String,
        code: i32,
        msg: String,
    },
    #[error("lcore {0}: {1}")]
    Launch(u32, LaunchError),
}

/// Asks the CPU to start loading the cache line holding `r` (a hint: no fault, no effect on
/// results). For batched lookups: touch what the next packets will need while this one is
/// judged.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = (r as *const T).cast::<i8>();
        // SAFETY: a prefetch never faults and does not read memory architecturally; `p` comes
        // from a live reference.
        #[allow(unused_unsafe)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// [`prefetch`] for every cache line `r` spans. An object not aligned to a line (a 38-byte
/// tuple in an array of them) may end in a line its first byte is not in: its last byte is
/// prefetched too.
#[inline(always)]
pub fn prefetch_all<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = (r as *const T).cast::<i8>();
        let size = core::mem::size_of::<T>();
        let mut off = 0;
        while off < size {
            // SAFETY: as in `prefetch`; the address is computed with wrapping arithmetic
            // within (or just past) the object and never dereferenced.
            #[allow(unused_unsafe)]
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.wrapping_add(off),
                );
            }
            off += 64;
        }
        if core::mem::align_of::<T>() < 64 && size > 0 {
            // SAFETY: as above; the object's last byte.
            #[allow(unused_unsafe)]
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.wrapping_add(size - 1),
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Text of a DPDK error code (positive errno or rte_errno value).
fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror accepts any integer and returns a pointer to a static or per-lcore
    // NUL-terminated buffer, valid until the next call on this thread; we copy it at once.
    let p = unsafe { dpdk_sys::rte_strerror(code.abs()) };
    if p.is_null() {
        return format!("error {code}");
    }
    // SAFETY: p is non-null and NUL-terminated per rte_strerror's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The thread's current `rte_errno`.
fn rte_errno() -> i32 {
    // SAFETY: reads a per-lcore (thread-local) integer; no preconditions.
    unsafe { dpdk_sys::rampart_errno() }
}
