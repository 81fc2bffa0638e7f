//! Memory for large tables, on huge pages where the system has them.
//!
//! A table much larger than the caches (a million connections and more) is read at random
//! places; on 4 KB pages nearly every such read also misses the TLB, and the page walk it
//! costs (longer still under a hypervisor's nested paging) comes on top of the cache miss. On
//! 2 MB pages the TLB reaches 512 times further. [`TableMemory`] maps a table's memory from
//! the kernel, 2 MB aligned, trying in turn:
//!
//! 1. the reserved huge page pool (`MAP_HUGETLB` with 2 MB pages: what operators reserve for
//!    DPDK; the pool is shared with DPDK's own memory, and the mapping fails cleanly when the
//!    pool has too few free pages);
//! 2. anonymous memory marked `MADV_HUGEPAGE` before it is first touched, so that the
//!    kernel backs it with transparent huge pages where it finds free 2 MB frames (with the
//!    system's `transparent_hugepage/enabled` at `madvise` or `always`);
//! 3. ordinary anonymous pages.
//!
//! and records which it got ([`PageKind`]). Regions under 2 MB always take ordinary pages.
//!
//! Invariants:
//! - A [`TableMemory`] with memory owns exactly one mapping of `mapped` bytes at `ptr` (a
//!   multiple of 2 MB for huge pages), holding `len` initialised elements; it is unmapped on
//!   drop. An empty one owns nothing (a dangling, aligned pointer).
//! - Elements are `Copy` (nothing to drop), and every element is written when the memory is
//!   made: all pages are faulted in then, none on the fast path later.

use std::ptr::NonNull;

/// Which pages a table may ask for (`[conntrack] hugepages`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HugePages {
    /// The reserved pool, else transparent huge pages, else ordinary pages.
    Auto,
    /// Transparent huge pages, else ordinary pages: leaves the reserved pool to DPDK, whose
    /// heap may need pages after start-up (rings, rte_acl builds on rule swaps). The default.
    #[default]
    Transparent,
    /// Ordinary pages, without advice (the kernel's default policy applies).
    Off,
}

/// What a [`TableMemory`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageKind {
    /// 2 MB pages from the reserved pool (`MAP_HUGETLB`).
    Reserved,
    /// Anonymous memory madvised for transparent huge pages before its first touch (how much
    /// of it the kernel backs with huge pages: [`transparent_huge_bytes`]).
    Transparent,
    /// Ordinary pages.
    Small,
}

/// Bytes mapped per [`PageKind`], summed over several tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageUse {
    pub reserved: usize,
    pub transparent: usize,
    pub small: usize,
}

impl PageUse {
    /// Counts `m`'s mapping.
    pub fn add<T: Copy>(&mut self, m: &TableMemory<T>) {
        let n = m.mapped_bytes();
        match m.kind() {
            PageKind::Reserved => self.reserved += n,
            PageKind::Transparent => self.transparent += n,
            PageKind::Small => self.small += n,
        }
    }

    pub fn total(&self) -> usize {
        self.reserved + self.transparent + self.small
    }
}

impl core::ops::AddAssign for PageUse {
    fn add_assign(&mut self, o: PageUse) {
        self.reserved += o.reserved;
        self.transparent += o.transparent;
        self.small += o.small;
    }
}

impl core::fmt::Display for PageUse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} MiB on reserved huge pages, {} MiB madvised for transparent huge pages, {} MiB on small pages",
            self.reserved >> 20,
            self.transparent >> 20,
            self.small >> 20
        )
    }
}

/// Anonymous memory of this process the kernel backs with transparent huge pages, in bytes
/// (`AnonHugePages` of `/proc/self/smaps_rollup`; `None` where it cannot be read). Slow:
/// for start-up reports.
pub fn transparent_huge_bytes() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = s.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb << 10)
}

const HUGE: usize = 2 << 20;
const SMALL: usize = 4096;

#[inline]
const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// A fixed-length slice of `T` in memory mapped for it (see the module docs); derefs to
/// `[T]`, unmapped on drop.
pub struct TableMemory<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes of the mapping at `ptr` (0: no mapping).
    mapped: usize,
    kind: PageKind,
}

// SAFETY: a `TableMemory` owns its mapping exclusively (no other handle to it exists), as a
// `Box<[T]>` owns its allocation; sending it moves that ownership.
unsafe impl<T: Copy + Send> Send for TableMemory<T> {}
// SAFETY: shared access only reads through `&[T]`, as for a `Box<[T]>`.
unsafe impl<T: Copy + Sync> Sync for TableMemory<T> {}

impl<T: Copy> TableMemory<T> {
    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T, pages: HugePages) -> TableMemory<T> {
        Self::from_fn(len, pages, |_| value)
    }

    /// Element `i` is `f(i)`. Aborts as `Vec` does when even ordinary pages cannot be had.
    pub fn from_fn(len: usize, pages: HugePages, mut f: impl FnMut(usize) -> T) -> TableMemory<T> {
        assert!(
            core::mem::align_of::<T>() <= SMALL,
            "alignment above a page"
        );
        let Some(bytes) = len.checked_mul(core::mem::size_of::<T>()) else {
            panic!("table of {len} elements: size overflows");
        };
        if bytes == 0 {
            return TableMemory {
                ptr: NonNull::dangling(),
                len,
                mapped: 0,
                kind: PageKind::Small,
            };
        }
        let (base, mapped, kind) = map(bytes, pages);
        // Owned from here, so the mapping is released even if `f` panics; `len` is set once
        // every element is written.
        let mut m = TableMemory {
            ptr: base.cast::<T>(),
            len: 0,
            mapped,
            kind,
        };
        let p = m.ptr.as_ptr();
        for i in 0..len {
            let v = f(i);
            // The address is computed without `unsafe` (it stays inside the mapping: `i < len`).
            let at = p.wrapping_add(i);
            // SAFETY: the mapping holds `bytes = len * size_of::<T>()` bytes from `p`, which is
            // page aligned (so aligned for `T`, checked above), and `at` is element `i < len`
            // of it; the memory is ours alone and `T: Copy` has no destructor to skip.
            unsafe { at.write(v) };
        }
        m.len = len;
        m
    }

    /// Which pages the memory got.
    pub fn kind(&self) -> PageKind {
        self.kind
    }

    /// Bytes mapped (the elements' size rounded up to the page size; 0 when empty).
    pub fn mapped_bytes(&self) -> usize {
        self.mapped
    }
}

impl<T: Copy> core::ops::Deref for TableMemory<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` is aligned and non-null and holds `len` initialised elements in memory
        // this value owns, alive as long as `self`; when nothing is mapped it is dangling and
        // `len` is 0 or `T` is zero-sized, which `from_raw_parts` allows.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> core::ops::DerefMut for TableMemory<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for TableMemory<T> {
    fn drop(&mut self) {
        if self.mapped != 0 {
            unmap(self.ptr.cast::<u8>(), self.mapped);
        }
    }
}

impl<T: Copy> core::fmt::Debug for TableMemory<T> {
    /// The shape, not the elements (tables hold millions).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TableMemory")
            .field("len", &self.len)
            .field("mapped", &self.mapped)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Maps `bytes` (> 0) of zeroed memory as `pages` allows: the mapping, its length and kind.
fn map(bytes: usize, pages: HugePages) -> (NonNull<u8>, usize, PageKind) {
    if bytes >= HUGE {
        let len = round_up(bytes, HUGE);
        if pages == HugePages::Auto {
            if let Some(p) = map_anonymous(len, libc::MAP_HUGETLB | libc::MAP_HUGE_2MB) {
                return (p, len, PageKind::Reserved);
            }
        }
        if pages != HugePages::Off {
            if let Some((p, kind)) = map_transparent(len) {
                return (p, len, kind);
            }
        }
    }
    let len = round_up(bytes, SMALL);
    match map_anonymous(len, 0) {
        Some(p) => (p, len, PageKind::Small),
        None => std::alloc::handle_alloc_error(
            std::alloc::Layout::from_size_align(bytes, SMALL).expect("page-aligned layout"),
        ),
    }
}

/// A private anonymous mapping of `len` bytes with extra `flags`; `None` when refused.
fn map_anonymous(len: usize, flags: libc::c_int) -> Option<NonNull<u8>> {
    // SAFETY: a new private anonymous mapping at an address of the kernel's choosing overlaps
    // nothing of ours; no file descriptor is involved. A failure returns MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast::<u8>())
    }
}

/// `len` bytes (a multiple of 2 MB) of anonymous memory at a 2 MB boundary, madvised for
/// transparent huge pages ([`PageKind::Small`] when the kernel refuses the advice).
fn map_transparent(len: usize) -> Option<(NonNull<u8>, PageKind)> {
    // One huge page more than needed, then the unaligned head and the tail given back.
    let span = len + HUGE;
    let raw = map_anonymous(span, 0)?;
    let addr = raw.as_ptr() as usize;
    let head = round_up(addr, HUGE) - addr;
    let tail = span - head - len;
    let start = NonNull::new(raw.as_ptr().wrapping_add(head))?;
    if head != 0 {
        unmap(raw, head);
    }
    if tail != 0 {
        if let Some(end) = NonNull::new(start.as_ptr().wrapping_add(len)) {
            unmap(end, tail);
        }
    }
    // SAFETY: `start..start + len` is inside the mapping made above and still mapped (only
    // the head before it and the tail after it were unmapped); advice changes no contents.
    let r = unsafe { libc::madvise(start.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
    let kind = if r == 0 {
        PageKind::Transparent
    } else {
        PageKind::Small
    };
    Some((start, kind))
}

/// Unmaps `len` bytes at `p`, a page-aligned range of a mapping made here that nothing
/// refers to any more.
fn unmap(p: NonNull<u8>, len: usize) {
    // SAFETY: the caller gives a range it owns, page aligned, with no live reference into it.
    let r = unsafe { libc::munmap(p.as_ptr().cast(), len) };
    debug_assert_eq!(r, 0, "munmap of a range mapped here");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tables_take_small_pages_and_hold_their_values() {
        for pages in [HugePages::Auto, HugePages::Transparent, HugePages::Off] {
            let m = TableMemory::from_fn(1000, pages, |i| i as u64 * 3);
            assert_eq!(m.kind(), PageKind::Small);
            assert_eq!(m.mapped_bytes(), 8192);
            assert_eq!(m.len(), 1000);
            assert!(m.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
        }
    }

    #[test]
    fn empty_tables_map_nothing() {
        let m = TableMemory::filled(0, 7u32, HugePages::Auto);
        assert!(m.is_empty());
        assert_eq!(m.mapped_bytes(), 0);
        let z: TableMemory<()> = TableMemory::filled(5, (), HugePages::Auto);
        assert_eq!(z.len(), 5);
        assert_eq!(z.mapped_bytes(), 0);
    }

    #[test]
    fn large_tables_are_aligned_to_2mb_whatever_they_get() {
        for pages in [HugePages::Auto, HugePages::Transparent, HugePages::Off] {
            let mut m = TableMemory::filled(3 << 20, 0xa5u8, pages);
            let huge = matches!(m.kind(), PageKind::Reserved | PageKind::Transparent);
            if pages == HugePages::Off {
                assert_eq!(m.kind(), PageKind::Small);
            }
            if huge {
                assert_eq!(m.as_ptr() as usize % HUGE, 0);
                assert_eq!(m.mapped_bytes(), 4 << 20);
            }
            assert!(m.iter().all(|&b| b == 0xa5));
            m[(3 << 20) - 1] = 1;
            m.fill(2);
            assert_eq!(m[12345], 2);
            let mut u = PageUse::default();
            u.add(&m);
            assert_eq!(u.total(), m.mapped_bytes());
        }
    }
}
