//! Packets a generator originates: allocated in bulk, filled in place, and sent with the ones a
//! device refuses kept for the next try instead of being freed.

use super::burst::MAX_BURST;
use super::port::TxQueue;
use super::{Mbuf, Mempool};

/// Up to [`MAX_BURST`] owned mbufs waiting to be sent, in order. Packets the device refuses stay
/// at the front and go first on the next [`TxBatch::send`]; whatever is left is freed on drop.
pub struct TxBatch {
    ptrs: [*mut dpdk_sys::rte_mbuf; MAX_BURST],
    len: usize,
}

// SAFETY: the batch owns the mbufs behind its pointers, and Mbuf is Send.
unsafe impl Send for TxBatch {}

impl Default for TxBatch {
    fn default() -> Self {
        TxBatch {
            ptrs: [std::ptr::null_mut(); MAX_BURST],
            len: 0,
        }
    }
}

impl TxBatch {
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

    /// Appends `n` fresh, empty mbufs from `pool` (all or none; false when the pool has fewer
    /// free or the batch has no room). They are the last `n` of [`TxBatch::packets_mut`].
    #[inline]
    pub fn alloc(&mut self, pool: &Mempool, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        if n > MAX_BURST - self.len {
            return false;
        }
        let room = self.ptrs[self.len..].as_mut_ptr();
        // SAFETY: pool is a live pktmbuf pool; `room` points to MAX_BURST - len >= n free slots,
        // which the call fills with n fresh mbufs we then own, or leaves untouched on failure.
        let rc = unsafe { dpdk_sys::rampart_pktmbuf_alloc_bulk(pool.as_ptr(), room, n as u32) };
        if rc != 0 {
            return false;
        }
        self.len += n;
        true
    }

    /// The waiting packets, in place, to be filled or patched before they are sent.
    #[inline]
    pub fn packets_mut(&mut self) -> &mut [Mbuf] {
        let live = &mut self.ptrs[..self.len];
        // SAFETY: ptrs[..len] are valid, non-null mbuf pointers this batch owns; Mbuf is
        // #[repr(transparent)] over NonNull<rte_mbuf>. The slice borrows self mutably, so the
        // batch cannot send or free them while it lives, and replacing an Mbuf through it keeps
        // one owner per mbuf.
        unsafe { std::slice::from_raw_parts_mut(live.as_mut_ptr().cast::<Mbuf>(), live.len()) }
    }

    /// Offers every waiting packet to `q`; returns how many the device took and their bytes.
    /// The refused ones move to the front, in order, and stay owned by the batch.
    #[inline]
    pub fn send(&mut self, q: &mut TxQueue) -> (usize, u64) {
        if self.len == 0 {
            return (0, 0);
        }
        let queued_bytes: u64 = self.ptrs[..self.len]
            .iter()
            // SAFETY: every pointer in ptrs[..len] is a live mbuf owned by this batch.
            .map(|&p| u64::from(unsafe { (*p).pkt_len }))
            .sum();
        // SAFETY: the TxQueue token proves (port, queue) is started and used by this lcore only;
        // ptrs[..len] are owned mbufs; tx_burst takes ownership of the first `sent`.
        let sent = usize::from(unsafe {
            dpdk_sys::rampart_eth_tx_burst(
                q.port.0,
                q.queue.0,
                self.ptrs.as_mut_ptr(),
                self.len as u16,
            )
        });
        let mut kept_bytes = 0u64;
        for &p in &self.ptrs[sent..self.len] {
            // SAFETY: refused mbufs are still ours and live.
            kept_bytes += u64::from(unsafe { (*p).pkt_len });
        }
        self.ptrs.copy_within(sent..self.len, 0);
        self.len -= sent;
        (sent, queued_bytes - kept_bytes)
    }
}

impl Drop for TxBatch {
    fn drop(&mut self) {
        for &p in &self.ptrs[..self.len] {
            // SAFETY: waiting mbufs are owned by the batch; each is freed exactly once.
            unsafe { dpdk_sys::rampart_pktmbuf_free(p) };
        }
    }
}
