//! The owning packet buffer.

use crate::wire::RxCsum;
use std::ptr::NonNull;

/// One owned `rte_mbuf`: freed on drop, handed to TX by value.
///
/// Only single-segment mbufs are exposed as contiguous bytes; multi-segment ones (jumbo frames
/// with scatter RX) are linearised on the cold path first by [`Mbuf::contiguous`].
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an Mbuf is the unique owner of its rte_mbuf; moving ownership between lcores is how
// DPDK hands packets across rings, and the mempool's free path is thread-safe.
unsafe impl Send for Mbuf {}

const _: () =
    assert!(std::mem::size_of::<Mbuf>() == std::mem::size_of::<*mut dpdk_sys::rte_mbuf>());

impl Mbuf {
    #[inline]
    pub(crate) fn from_raw(raw: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    #[inline]
    pub(crate) fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.raw.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline]
    fn hdr(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: raw points to a live mbuf we own exclusively.
        unsafe { self.raw.as_ref() }
    }

    /// Bytes in the first segment.
    #[inline]
    pub fn data_len(&self) -> usize {
        usize::from(self.hdr().data_len)
    }

    /// Asks the CPU to start loading the first cache line of the packet data (a hint: no fault,
    /// no effect on results).
    #[inline(always)]
    pub fn prefetch_data(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            let h = self.hdr();
            let p = h
                .buf_addr
                .cast::<u8>()
                .wrapping_add(usize::from(h.data_off));
            // SAFETY: a prefetch never faults and does not read memory architecturally; the
            // address is computed with wrapping arithmetic and never dereferenced.
            #[allow(unused_unsafe)]
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.cast::<i8>(),
                );
            }
        }
    }

    /// Bytes in the whole packet (all segments).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.hdr().pkt_len as usize
    }

    /// Number of segments.
    #[inline]
    pub fn segments(&self) -> u16 {
        self.hdr().nb_segs
    }

    /// The device's verdict on the TCP/UDP checksum: set by devices with RX checksum
    /// offload, `Unchecked` otherwise (and for frames Rampart built).
    #[inline]
    pub fn rx_l4_csum(&self) -> RxCsum {
        let f = self.hdr().ol_flags & u64::from(dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_MASK);
        if f == u64::from(dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD) {
            RxCsum::Good
        } else if f == u64::from(dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_BAD) {
            RxCsum::Bad
        } else {
            RxCsum::Unchecked
        }
    }

    /// The port the packet arrived on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.hdr().port
    }

    /// Records the port the packet arrived on (Rampart's port index, when a packet is handed
    /// to another worker).
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: raw points to a live mbuf we own exclusively; `port` is a plain field.
        unsafe { self.raw.as_mut().port = port };
    }

    /// The bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.hdr();
        // SAFETY: buf_addr + data_off stays inside the mbuf's data room (DPDK's mbuf invariant).
        let start = unsafe { h.buf_addr.cast::<u8>().add(usize::from(h.data_off)) };
        // SAFETY: data_len bytes from `start` are initialised packet data inside the data room;
        // the slice borrows self, which owns the buffer.
        unsafe { std::slice::from_raw_parts(start, usize::from(h.data_len)) }
    }

    /// The bytes of the first segment, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (addr, off, len) = {
            let h = self.hdr();
            (h.buf_addr, h.data_off, h.data_len)
        };
        // SAFETY: as in `data`: the offset stays inside the data room.
        let start = unsafe { addr.cast::<u8>().add(usize::from(off)) };
        // SAFETY: as in `data`; &mut self guarantees exclusive access. Rampart never clones
        // mbufs (refcnt stays 1), so no other holder shares these bytes.
        unsafe { std::slice::from_raw_parts_mut(start, usize::from(len)) }
    }

    /// Makes the packet one contiguous segment; false when it cannot (no room), which callers
    /// count as a drop.
    #[cold]
    #[inline(never)]
    pub fn contiguous(&mut self) -> bool {
        if self.segments() == 1 {
            return true;
        }
        // SAFETY: raw is a live mbuf chain we own.
        unsafe { dpdk_sys::rampart_pktmbuf_linearize(self.raw.as_ptr()) == 0 }
    }

    /// Appends `bytes` at the tail; `None` when the segment has no room.
    pub fn append(&mut self, bytes: &[u8]) -> Option<()> {
        let len = u16::try_from(bytes.len()).ok()?;
        // SAFETY: raw is a live mbuf we own; append returns NULL or a pointer to `len` writable
        // bytes inside the data room.
        let p = unsafe { dpdk_sys::rampart_pktmbuf_append(self.raw.as_ptr(), len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: p points to `len` writable bytes just reserved; bytes does not overlap them.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.cast::<u8>(), bytes.len()) };
        Some(())
    }

    /// Makes a single-segment mbuf hold exactly `len` bytes from its current data offset (their
    /// content is whatever the buffer held: the caller writes them through
    /// [`Mbuf::data_mut`]). False, and nothing changed, when the mbuf has more than one
    /// segment or its buffer has no room. Inlined, for generators filling fresh mbufs per
    /// packet.
    #[inline]
    pub fn set_frame_len(&mut self, len: usize) -> bool {
        // SAFETY: raw points to a live mbuf we own exclusively (&mut self).
        let h = unsafe { self.raw.as_mut() };
        let Ok(len16) = u16::try_from(len) else {
            return false;
        };
        if h.nb_segs != 1 || usize::from(h.data_off) + len > usize::from(h.buf_len) {
            return false;
        }
        h.data_len = len16;
        h.pkt_len = u32::from(len16);
        true
    }

    /// Removes `len` bytes from the tail.
    pub fn trim(&mut self, len: u16) -> bool {
        // SAFETY: raw is a live mbuf we own; trim validates len against the last segment.
        unsafe { dpdk_sys::rampart_pktmbuf_trim(self.raw.as_ptr(), len) == 0 }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the only reference to this mbuf chain; it is not used after this.
        unsafe { dpdk_sys::rampart_pktmbuf_free(self.raw.as_ptr()) }
    }
}

impl AsRef<[u8]> for Mbuf {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl AsMut<[u8]> for Mbuf {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}
