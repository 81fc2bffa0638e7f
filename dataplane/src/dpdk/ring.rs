//! Single-producer, single-consumer rings of mbufs: how one worker hands a packet to the worker
//! that owns its flow.
//!
//! Invariants:
//! - A ring is created with `RING_F_SP_ENQ | RING_F_SC_DEQ`: exactly one [`RingTx`] enqueues
//!   and one [`RingRx`] dequeues, each owned by one lcore (they are `Send`, not `Clone`).
//! - Every pointer in the ring is an owned mbuf; when the last side is dropped the ring is
//!   drained (mbufs freed) and then freed, so nothing leaks.

use super::burst::MAX_BURST;
use super::{rte_errno, strerror, DpdkError, Eal, Mbuf, RxBurst};
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

struct Inner {
    raw: NonNull<dpdk_sys::rte_ring>,
}

// SAFETY: the ring is SP/SC and each side is owned by exactly one thread at a time; the
// Inner itself is only used to free the ring once both sides are gone.
unsafe impl Send for Inner {}
// SAFETY: as above: shared references to Inner never touch the ring concurrently except
// through the one producer and one consumer, which the ring supports.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut ptrs = [std::ptr::null_mut::<std::ffi::c_void>(); MAX_BURST];
        loop {
            // SAFETY: both sides are gone (this is the last Arc), so this thread is the only
            // user of the ring; ptrs has room for MAX_BURST pointers.
            let n = unsafe {
                dpdk_sys::rampart_ring_dequeue_burst(
                    self.raw.as_ptr(),
                    ptrs.as_mut_ptr(),
                    MAX_BURST as u32,
                )
            };
            if n == 0 {
                break;
            }
            for p in &ptrs[..n as usize] {
                if let Some(p) = NonNull::new(p.cast::<dpdk_sys::rte_mbuf>()) {
                    drop(Mbuf::from_raw(p));
                }
            }
        }
        // SAFETY: the ring was created by rte_ring_create and is now empty and unused.
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) };
    }
}

/// The enqueue side of a hand-off ring.
pub struct RingTx {
    inner: Arc<Inner>,
}

/// The dequeue side of a hand-off ring.
pub struct RingRx {
    inner: Arc<Inner>,
}

/// Creates a ring of at least `size` mbufs (rounded up to a power of two) named `name`
/// (unique in the process) and returns its two sides.
pub fn handoff_ring(_eal: &Eal, name: &str, size: u32) -> Result<(RingTx, RingRx), DpdkError> {
    let cname = CString::new(name).map_err(|_| DpdkError::BadArgument(name.into()))?;
    let count = size.max(2).next_power_of_two();
    // SAFETY: EAL is initialised (`_eal`); cname is NUL-terminated and copied by DPDK.
    let raw = unsafe {
        dpdk_sys::rte_ring_create(
            cname.as_ptr(),
            count,
            dpdk_sys::SOCKET_ID_ANY,
            dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ,
        )
    };
    let raw = NonNull::new(raw).ok_or_else(|| {
        let code = rte_errno();
        DpdkError::Ring {
            name: name.into(),
            code,
            msg: strerror(code),
        }
    })?;
    let inner = Arc::new(Inner { raw });
    Ok((
        RingTx {
            inner: inner.clone(),
        },
        RingRx { inner },
    ))
}

/// Packets waiting to be handed to one worker: enqueued together at the end of a burst.
pub struct HandoffBuffer {
    ptrs: [*mut dpdk_sys::rte_mbuf; MAX_BURST],
    len: usize,
}

// SAFETY: the buffer owns the mbufs behind its pointers (moved in from `Mbuf`s).
unsafe impl Send for HandoffBuffer {}

impl Default for HandoffBuffer {
    fn default() -> Self {
        HandoffBuffer {
            ptrs: [std::ptr::null_mut(); MAX_BURST],
            len: 0,
        }
    }
}

/// What one hand-off flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandedOff {
    pub sent: u32,
    /// Refused because the ring was full, and freed.
    pub dropped: u32,
}

impl HandoffBuffer {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `m`; flushes first when the buffer is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf, ring: &mut RingTx) -> HandedOff {
        let mut f = HandedOff::default();
        if self.len == MAX_BURST {
            f = self.flush(ring);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        f
    }

    /// Enqueues what is buffered; what the ring refuses is freed and counted.
    #[inline]
    pub fn flush(&mut self, ring: &mut RingTx) -> HandedOff {
        if self.len == 0 {
            return HandedOff::default();
        }
        // SAFETY: `ring` is the ring's only producer (RingTx is not Clone and is borrowed
        // mutably); ptrs[..len] are owned, valid mbuf pointers, whose ownership passes to the
        // ring for the ones it accepts.
        let n = unsafe {
            dpdk_sys::rampart_ring_enqueue_burst(
                ring.inner.raw.as_ptr(),
                self.ptrs.as_ptr().cast(),
                self.len as u32,
            )
        } as usize;
        for p in &self.ptrs[n..self.len] {
            if let Some(p) = NonNull::new(*p) {
                drop(Mbuf::from_raw(p));
            }
        }
        let f = HandedOff {
            sent: n as u32,
            dropped: (self.len - n) as u32,
        };
        self.len = 0;
        f
    }
}

impl Drop for HandoffBuffer {
    fn drop(&mut self) {
        for p in &self.ptrs[..self.len] {
            if let Some(p) = NonNull::new(*p) {
                drop(Mbuf::from_raw(p));
            }
        }
        self.len = 0;
    }
}

impl RxBurst {
    /// Takes up to [`MAX_BURST`] packets handed to this worker through `ring`, replacing any not
    /// yet taken (which are freed).
    #[inline]
    pub fn receive_ring(&mut self, ring: &mut RingRx) -> usize {
        let ptrs = self.reset_for_fill();
        // SAFETY: `ring` is the ring's only consumer (RingRx is not Clone and is borrowed
        // mutably); ptrs has room for MAX_BURST pointers, and every pointer dequeued is an
        // owned mbuf that the producer gave up.
        let n = unsafe {
            dpdk_sys::rampart_ring_dequeue_burst(
                ring.inner.raw.as_ptr(),
                ptrs.as_mut_ptr().cast(),
                MAX_BURST as u32,
            )
        } as usize;
        self.set_filled(n);
        n
    }
}
