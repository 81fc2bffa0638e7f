//! Fixed-size bursts: what one `rte_eth_rx_burst` fills and what one `rte_eth_tx_burst` drains.

use super::port::{RxQueue, TxQueue};
use super::simd::{Screen, Screened};
use super::Mbuf;
use crate::wire::parse::ETHER_KINDS_LEN;
use std::ptr::NonNull;

/// The burst size every worker uses (DPDK's customary 32).
pub const MAX_BURST: usize = 32;

/// Packets received by one RX burst. Iterating moves each mbuf out; any not taken are freed on
/// drop, so an early exit cannot leak.
pub struct RxBurst {
    ptrs: [*mut dpdk_sys::rte_mbuf; MAX_BURST],
    len: usize,
    pos: usize,
}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst {
            ptrs: [std::ptr::null_mut(); MAX_BURST],
            len: 0,
            pos: 0,
        }
    }
}

impl RxBurst {
    /// Receives up to [`MAX_BURST`] packets from `q`, replacing any not yet taken (which are freed).
    #[inline]
    pub fn receive(&mut self, q: &mut RxQueue) -> usize {
        self.free_rest();
        // SAFETY: the RxQueue token proves (port, queue) is configured, started and polled by
        // this lcore only; ptrs has room for MAX_BURST pointers.
        let n = unsafe {
            dpdk_sys::rampart_eth_rx_burst(
                q.port.0,
                q.queue.0,
                self.ptrs.as_mut_ptr(),
                MAX_BURST as u16,
            )
        };
        self.len = usize::from(n);
        self.pos = 0;
        self.len
    }

    /// Frees what is not yet taken and returns the pointer array to fill.
    #[inline]
    pub(crate) fn reset_for_fill(&mut self) -> &mut [*mut dpdk_sys::rte_mbuf; MAX_BURST] {
        self.free_rest();
        self.len = 0;
        self.pos = 0;
        &mut self.ptrs
    }

    /// After a fill of `n` owned, valid mbuf pointers into the array of
    /// [`RxBurst::reset_for_fill`].
    #[inline]
    pub(crate) fn set_filled(&mut self, n: usize) {
        self.len = n.min(MAX_BURST);
        self.pos = 0;
    }

    /// Makes the burst hold the first [`MAX_BURST`] mbufs of `mbufs` (what it held before is
    /// freed); the iterator is not advanced past them. Returns how many it holds.
    pub fn refill(&mut self, mbufs: impl IntoIterator<Item = Mbuf>) -> usize {
        let ptrs = self.reset_for_fill();
        let mut n = 0;
        for m in mbufs.into_iter().take(MAX_BURST) {
            ptrs[n] = m.into_raw();
            n += 1;
        }
        self.set_filled(n);
        n
    }

    /// Packets left in the burst.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.len - self.pos
    }

    /// The packets not yet taken, in place: stages judge them here before they move on.
    #[inline]
    pub fn packets_mut(&mut self) -> &mut [Mbuf] {
        let rest = &mut self.ptrs[self.pos..self.len];
        // SAFETY: rx_burst filled ptrs[..len] with valid, non-null mbuf pointers that this burst
        // owns, and ptrs[pos..] have not been handed out. Mbuf is #[repr(transparent)] over
        // NonNull<rte_mbuf>, which has the layout of a non-null *mut rte_mbuf. The slice borrows
        // self mutably, so the pointers cannot be taken while it lives; swapping or replacing
        // Mbufs through it keeps exactly one owner per mbuf.
        unsafe { std::slice::from_raw_parts_mut(rest.as_mut_ptr().cast::<Mbuf>(), rest.len()) }
    }

    /// The burst screen ([`super::simd::Simd::screen`]) over the packets not yet taken: bit
    /// `j` of the answer is the `j`-th of [`RxBurst::packets_mut`].
    #[inline(always)]
    pub(crate) fn screen<S: Screen>(&self, s: S, kinds: &[u8; ETHER_KINDS_LEN]) -> Screened {
        // SAFETY: ptrs[pos..len] are live mbufs this burst owns (filled by rx_burst or a
        // ring, not yet handed out).
        unsafe { s.screen(&self.ptrs[self.pos..self.len], kinds) }
    }

    /// Starts loading the first data cache line of every packet not yet taken.
    #[inline]
    pub fn prefetch_data(&mut self) {
        for m in self.packets_mut().iter() {
            m.prefetch_data();
        }
    }

    fn free_rest(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}

impl Iterator for RxBurst {
    type Item = Mbuf;
    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.pos == self.len {
            return None;
        }
        let p = self.ptrs[self.pos];
        self.pos += 1;
        // rx_burst fills exactly `len` valid, non-null mbuf pointers that we now own.
        NonNull::new(p).map(Mbuf::from_raw)
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        self.free_rest();
    }
}

/// A per-port TX buffer: packets wait here until it is full or the drain timer fires.
pub struct TxBuffer {
    ptrs: [*mut dpdk_sys::rte_mbuf; MAX_BURST],
    len: usize,
}

// SAFETY: the buffer owns the mbufs behind its pointers (moved in from `Mbuf`s), and Mbuf is Send.
unsafe impl Send for TxBuffer {}
// SAFETY: RxBurst likewise only holds owned mbuf pointers.
unsafe impl Send for RxBurst {}

impl Default for TxBuffer {
    fn default() -> Self {
        TxBuffer {
            ptrs: [std::ptr::null_mut(); MAX_BURST],
            len: 0,
        }
    }
}

/// What one flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub sent: u32,
    pub sent_bytes: u64,
    pub dropped: u32,
}

impl std::ops::AddAssign for Flushed {
    #[inline]
    fn add_assign(&mut self, o: Flushed) {
        self.sent += o.sent;
        self.sent_bytes += o.sent_bytes;
        self.dropped += o.dropped;
    }
}

impl TxBuffer {
    /// Packets waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the next push would overflow; flush first.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Queues `m`; when the buffer is already full it is flushed to `q` first.
    #[inline]
    pub fn push(&mut self, m: Mbuf, q: &mut TxQueue) -> Flushed {
        let f = if self.is_full() {
            self.flush(q)
        } else {
            Flushed::default()
        };
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        f
    }

    /// Moves every packet not yet taken from `burst` into the buffer, in order, flushing to `q`
    /// each time the buffer fills (so a full buffer leaves at once, as in DPDK's l3fwd).
    /// `burst_bytes` is the sum of those packets' lengths (the caller read them already). A
    /// whole burst meeting an empty buffer is sent from the burst's own array (l3fwd's
    /// shortcut): nothing would wait anyway.
    #[inline(always)]
    pub fn push_all(&mut self, burst: &mut RxBurst, q: &mut TxQueue, burst_bytes: u64) -> Flushed {
        if self.len == 0 && burst.remaining() == MAX_BURST {
            let f = transmit(&mut burst.ptrs, burst_bytes, q);
            // Sent or freed, all of them: the burst no longer owns any.
            burst.pos = burst.len;
            return f;
        }
        let mut f = Flushed::default();
        loop {
            let take = burst.remaining().min(MAX_BURST - self.len);
            self.ptrs[self.len..self.len + take]
                .copy_from_slice(&burst.ptrs[burst.pos..burst.pos + take]);
            // Ownership moved with the pointers: the burst no longer frees them.
            burst.pos += take;
            self.len += take;
            if self.is_full() {
                f += self.flush(q);
            }
            if burst.remaining() == 0 {
                return f;
            }
        }
    }

    /// Sends what waits; what the device refuses is freed and counted as dropped.
    #[inline]
    pub fn flush(&mut self, q: &mut TxQueue) -> Flushed {
        if self.len == 0 {
            return Flushed::default();
        }
        // Lengths are read now: once sent, the mbufs belong to the device.
        let queued_bytes: u64 = self.ptrs[..self.len].iter().map(|&p| pkt_len(p)).sum();
        let f = transmit(&mut self.ptrs[..self.len], queued_bytes, q);
        self.len = 0;
        f
    }
}

/// Sends the owned mbufs of `ptrs` (`bytes` long in all) to `q`; frees and counts what the
/// device refuses. None of them is owned by the caller afterwards.
#[inline(always)]
fn transmit(ptrs: &mut [*mut dpdk_sys::rte_mbuf], bytes: u64, q: &mut TxQueue) -> Flushed {
    let len = ptrs.len();
    // SAFETY: the TxQueue token proves (port, queue) is started and used by this lcore only;
    // ptrs are owned mbufs (at most MAX_BURST, so the count fits u16). tx_burst takes
    // ownership of the first `sent`.
    let sent = usize::from(unsafe {
        dpdk_sys::rampart_eth_tx_burst(q.port.0, q.queue.0, ptrs.as_mut_ptr(), len as u16)
    });
    let mut sent_bytes = bytes;
    if sent < len {
        sent_bytes -= refuse(&ptrs[sent..]);
    }
    Flushed {
        sent: sent as u32,
        sent_bytes,
        dropped: (len - sent) as u32,
    }
}

/// Frees mbufs the device refused; returns their bytes.
#[cold]
#[inline(never)]
fn refuse(ptrs: &[*mut dpdk_sys::rte_mbuf]) -> u64 {
    let mut bytes = 0;
    for &p in ptrs {
        bytes += pkt_len(p);
        // SAFETY: the device refused these; the caller still owned them and frees each once.
        unsafe { dpdk_sys::rampart_pktmbuf_free(p) };
    }
    bytes
}

/// The packet length of an mbuf the caller owns.
#[inline(always)]
fn pkt_len(p: *mut dpdk_sys::rte_mbuf) -> u64 {
    // SAFETY: callers pass pointers to live mbufs owned by this module's buffers.
    u64::from(unsafe { (*p).pkt_len })
}

impl Drop for TxBuffer {
    fn drop(&mut self) {
        for &p in &self.ptrs[..self.len] {
            // SAFETY: unsent mbufs are still owned by the buffer; freed exactly once.
            unsafe { dpdk_sys::rampart_pktmbuf_free(p) };
        }
    }
}
