//! Packet-buffer mempools.

use super::{rte_errno, strerror, DpdkError, Eal, Mbuf};
use std::ffi::CString;
use std::ptr::NonNull;

/// A pool of packet buffers (`rte_pktmbuf_pool_create`). Freed on drop only when no mbuf is in
/// use; otherwise it is deliberately leaked (freeing memory that a ring or a NIC may still point
/// to is worse than a leak at shutdown).
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
    name: String,
}

// SAFETY: rte_mempool is designed for concurrent get/put from many lcores; the pointer is shared,
// never mutated through this handle except by DPDK's own thread-safe functions.
unsafe impl Send for Mempool {}
// SAFETY: as above: all access goes through DPDK's multi-producer/multi-consumer API.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `count` mbufs with a per-lcore cache of `cache` and `data_room` bytes of
    /// buffer (headroom included) on `socket` (`None`: any).
    pub fn new(
        _eal: &Eal,
        name: &str,
        count: u32,
        cache: u32,
        data_room: u16,
        socket: Option<i32>,
    ) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::BadArgument(name.into()))?;
        let socket = socket.unwrap_or(dpdk_sys::SOCKET_ID_ANY);
        // SAFETY: EAL is initialised (`_eal`), cname is NUL-terminated and copied by DPDK.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, socket)
        };
        NonNull::new(raw)
            .map(|raw| Mempool {
                raw,
                name: name.into(),
            })
            .ok_or_else(|| {
                let code = rte_errno();
                DpdkError::Mempool {
                    name: name.into(),
                    code,
                    msg: strerror(code),
                }
            })
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs currently allocated (in rings, in flight, held by the application or by a device).
    pub fn in_use(&self) -> u32 {
        // SAFETY: raw is a live mempool; the count is a racy-but-safe read of per-lcore caches.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Mbufs free in the pool.
    pub fn available(&self) -> u32 {
        // SAFETY: as in `in_use`.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Allocates one mbuf (slow path: packets Rampart originates, tests, generators).
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: raw is a live pktmbuf pool; a non-null result is a fresh mbuf we now own.
        let m = unsafe { dpdk_sys::rampart_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(m).map(Mbuf::from_raw)
    }

    /// Allocates an mbuf holding a copy of `frame`; `None` when the pool is empty or the frame
    /// does not fit one segment.
    pub fn alloc_frame(&self, frame: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        m.append(frame)?;
        Some(m)
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        if self.in_use() == 0 {
            // SAFETY: no mbuf of this pool is in use, and no device references it (ports are
            // closed before their pool is dropped).
            unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
        }
    }
}
