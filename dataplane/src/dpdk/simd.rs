//! SIMD kernels chosen at run time: the classifier's leaf scan (`classify::cuts`) and the
//! pass-through worker's burst screen ([`screen`]).
//!
//! The leaf scan's kernel compares a key with eight entries' ranges at once ([`RangeMask::range_mask`]). It
//! comes in three builds: AVX-512 (F and VL: compares into mask registers), AVX2, and a portable
//! one (SSE2, which every x86-64 CPU has, or plain Rust on other architectures). A [`Simd`] value
//! proves which of them the CPU runs: it is only made by [`Simd::detect`] (or
//! [`Simd::detect_up_to`], for tests and for measuring the narrower builds), and
//! [`Simd::run`] hands a [`SimdTask`] the kernel of its level inside a function compiled for that
//! level, so the task's own code (inlined there) is compiled for it too.
//!
//! Invariants:
//! - Every build of the kernel gives the same answer for the same input (`simd::tests` checks
//!   the builds this CPU has against a scalar reference).
//! - The AVX2 and AVX-512 code is only reached through a [`Simd`] whose level the CPU was found
//!   to support; the `unsafe` blocks below rely on nothing else.

use crate::wire::parse::{ETHER_KINDS_LEN, ETHER_OTHER};

/// Lanes one kernel call compares.
pub const LANES: usize = 8;

/// Eight `i32` lanes, aligned so that they are one aligned 32-byte load (never across a cache
/// line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Lanes(pub [i32; LANES]);

/// The kernel.
pub trait RangeMask: Copy {
    /// Bit `j` set when `bounds[2 d].0[j] <= key[d] <= bounds[2 d + 1].0[j]` for each of the
    /// five dimensions `d` (signed compares).
    fn range_mask(self, bounds: &[Lanes; 10], key: &[i32; 5]) -> u32;
}

/// Code generic over the kernel, run by [`Simd::run`] (a closure cannot be generic).
pub trait SimdTask {
    type Output;
    /// Runs with kernel `k`. Mark it `#[inline(always)]`: it is then compiled into the
    /// function of `k`'s level, with that level's instructions enabled.
    fn run<K: RangeMask>(self, k: K) -> Self::Output;
}

/// The kernel builds, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// SSE2 on x86-64, plain Rust elsewhere.
    Portable,
    /// AVX2: one 256-bit compare per bound.
    Avx2,
    /// AVX-512 F, VL and BW: 256-bit compares into mask registers, chained (the leaf scan);
    /// eight packets a step (the burst screen).
    Avx512,
}

/// A kernel level the CPU runs (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Simd {
    level: SimdLevel,
}

impl Simd {
    /// The widest level this CPU runs.
    pub fn detect() -> Simd {
        Simd::detect_up_to(SimdLevel::Avx512)
    }

    /// The widest level this CPU runs, at most `max`.
    pub fn detect_up_to(max: SimdLevel) -> Simd {
        Simd {
            level: max.min(cpu_level()),
        }
    }

    /// The portable level (every CPU).
    pub fn portable() -> Simd {
        Simd {
            level: SimdLevel::Portable,
        }
    }

    pub fn level(self) -> SimdLevel {
        self.level
    }

    /// Runs `task` with the kernel of this level.
    #[inline(always)]
    pub fn run<T: SimdTask>(self, task: T) -> T::Output {
        match self.level {
            SimdLevel::Portable => task.run(Portable),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `self.level` is at most what `cpu_level` found this CPU to support.
            SimdLevel::Avx2 => unsafe { x86::run_avx2(task) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            SimdLevel::Avx512 => unsafe { x86::run_avx512(task) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => task.run(Portable),
        }
    }
}

impl Simd {
    /// The burst screen over the packets `ptrs` (at most 32): for each, [`screen_one`] of its
    /// first segment. The AVX2 kernel serves the AVX2 and AVX-512 levels; the portable level
    /// screens nothing (`screened` 0), leaving every packet to the caller's scalar checks.
    ///
    /// The worker's pass-through loop runs the AVX2 kernel through [`Simd::run_screen`],
    /// inlined; it calls this entry at the AVX-512 level ([`CalledScreen`]).
    ///
    /// # Safety
    /// Every pointer in `ptrs` must be a live mbuf the caller owns.
    #[inline]
    pub(crate) unsafe fn screen(
        self,
        ptrs: &[*mut dpdk_sys::rte_mbuf],
        kinds: &[u8; ETHER_KINDS_LEN],
    ) -> Screened {
        match self.level {
            SimdLevel::Portable => Screened::default(),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: this level is at most what `cpu_level` found, and both wider levels
            // include AVX2; the pointers are the caller's promise.
            SimdLevel::Avx2 => unsafe { x86::screen_avx2(ptrs, kinds) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above; the AVX-512 level includes F and BW.
            SimdLevel::Avx512 => unsafe { x86::screen_avx512(ptrs, kinds) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => Screened::default(),
        }
    }
}

/// The burst screen of one level ([`Simd::screen`]), for code compiled with that level's
/// instructions: [`Simd::run_screen`] hands it to a [`ScreenTask`] inside a function compiled
/// for the level, where the screen is inlined and its answer stays in registers.
pub(crate) trait Screen: Copy {
    /// [`Simd::screen`] at this level.
    ///
    /// # Safety
    /// Every pointer in `ptrs` must be a live mbuf the caller owns.
    unsafe fn screen(
        self,
        ptrs: &[*mut dpdk_sys::rte_mbuf],
        kinds: &[u8; ETHER_KINDS_LEN],
    ) -> Screened;
}

/// Code generic over the burst screen, run by [`Simd::run_screen`].
pub(crate) trait ScreenTask {
    type Output;
    /// Runs with screen `s`. Mark it `#[inline(always)]`, as [`SimdTask::run`].
    fn run<S: Screen>(self, s: S) -> Self::Output;
}

/// The portable level's screen: it screens nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NoScreen;

impl Screen for NoScreen {
    #[inline(always)]
    unsafe fn screen(self, _: &[*mut dpdk_sys::rte_mbuf], _: &[u8; ETHER_KINDS_LEN]) -> Screened {
        Screened::default()
    }
}

/// The screen of a [`Simd`] level called out of line ([`Simd::screen`]), for code compiled for
/// the baseline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CalledScreen(pub Simd);

impl Screen for CalledScreen {
    #[inline(always)]
    unsafe fn screen(
        self,
        ptrs: &[*mut dpdk_sys::rte_mbuf],
        kinds: &[u8; ETHER_KINDS_LEN],
    ) -> Screened {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.0.screen(ptrs, kinds) }
    }
}

impl Simd {
    /// Runs `task` with the burst screen of this level: at the AVX2 level inside a function
    /// compiled for it, the screen inlined; at the AVX-512 level compiled for the baseline,
    /// calling the screen out of line ([`CalledScreen`]: compiled with AVX-512 around the
    /// call, the pass-through loop ran slower on `net_null` in alternating runs).
    #[inline(always)]
    pub(crate) fn run_screen<T: ScreenTask>(self, task: T) -> T::Output {
        match self.level {
            SimdLevel::Portable => task.run(NoScreen),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `self.level` is at most what `cpu_level` found this CPU to support.
            SimdLevel::Avx2 => unsafe { x86::run_screen_avx2(task) },
            SimdLevel::Avx512 => task.run(CalledScreen(self)),
            #[cfg(not(target_arch = "x86_64"))]
            _ => task.run(NoScreen),
        }
    }
}

/// The environment variable that caps the pass-through worker's burst screen at a level
/// (`portable`, `avx2` or `avx512`; anything else, or nothing, leaves it uncapped), so that
/// the narrower builds can be measured on the same machine.
pub const SCREEN_SIMD_ENV: &str = "RAMPART_SCREEN_SIMD";

impl SimdLevel {
    /// The level of a name as [`SCREEN_SIMD_ENV`] spells it.
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        match name {
            "portable" => Some(SimdLevel::Portable),
            "avx2" => Some(SimdLevel::Avx2),
            "avx512" => Some(SimdLevel::Avx512),
            _ => None,
        }
    }
}

/// The cap [`SCREEN_SIMD_ENV`] sets on the burst screen's level (the widest when unset), or
/// the error to report for a value that names no level (the daemon refuses to start with
/// one, so that a misspelt cap is not silently ignored).
pub fn screen_level_cap() -> Result<SimdLevel, String> {
    match std::env::var_os(SCREEN_SIMD_ENV) {
        None => Ok(SimdLevel::Avx512),
        Some(v) => v.to_str().and_then(SimdLevel::from_name).ok_or_else(|| {
            format!(
                "{SCREEN_SIMD_ENV}={}: not a SIMD level (portable, avx2 or avx512)",
                v.to_string_lossy()
            )
        }),
    }
}

/// The widest level the CPU runs.
fn cpu_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx2")
        {
            return SimdLevel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Portable
}

/// The portable kernel.
#[derive(Clone, Copy, Debug)]
pub struct Portable;

impl RangeMask for Portable {
    #[inline(always)]
    fn range_mask(self, bounds: &[Lanes; 10], key: &[i32; 5]) -> u32 {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        // SAFETY: SSE2 is enabled for the whole build (it is part of the x86-64 baseline).
        return unsafe { x86::range_mask_sse2(bounds, key) };
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        return range_mask_scalar(bounds, key);
    }
}

/// The reference: one lane at a time.
#[inline(always)]
pub fn range_mask_scalar(bounds: &[Lanes; 10], key: &[i32; 5]) -> u32 {
    let mut m = 0u32;
    for j in 0..LANES {
        let hit = (0..5).all(|d| bounds[2 * d].0[j] <= key[d] && key[d] <= bounds[2 * d + 1].0[j]);
        m |= u32::from(hit) << j;
    }
    m
}

/// Bytes of a frame the burst screen reads (offsets 12 to 52: the ethertype, an IPv4 header
/// without options and the first 18 bytes after it); a shorter first segment is left to the
/// scalar checks.
pub const SCREEN_MIN_LEN: u16 = 52;

/// Packets one step of the AVX2 screen takes.
pub const SCREEN_STEP: usize = 4;

/// What [`screen`] found in a run of packets: bit `j` is packet `j` of the run (only the first
/// `screened` packets were looked at; the others are the caller's to check).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Screened {
    /// Packets [`screen_one`] finds IPv4.
    pub ipv4: u32,
    /// Packets [`screen_one`] finds of an ethertype the straight-line parser passes untouched.
    pub other: u32,
    /// The packet lengths (`pkt_len`) of the first `screened` packets, summed.
    pub bytes: u64,
    /// Packets looked at, from the first: all of them at the AVX-512 level, a multiple of
    /// [`SCREEN_STEP`] at the AVX2 level, none at the portable level.
    pub screened: usize,
}

/// What the burst screen decides for one packet (the scalar reference of every level).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScreenLane {
    /// A single segment at least [`SCREEN_MIN_LEN`] bytes long, untagged IPv4 (version 4,
    /// IHL 5), neither MF nor a fragment offset, `20 <= total length <= data_len - 14`, the
    /// header checksum right, and UDP with `8 <= length <= total - 20` or TCP with
    /// `20 <= data offset * 4 <= total - 20`: a frame `wire::parse::classify_common` accepts as
    /// IPv4 (the property tests hold it to that).
    pub ipv4: bool,
    /// A single segment at least [`SCREEN_MIN_LEN`] bytes long whose ethertype's entry in
    /// `kinds` is [`ETHER_OTHER`].
    pub other: bool,
}

/// The scalar reference of the screen: `frame` is the first segment's bytes (`data_len` of
/// them), `segments` the mbuf's segment count.
pub fn screen_one(frame: &[u8], segments: u16, kinds: &[u8; ETHER_KINDS_LEN]) -> ScreenLane {
    if segments != 1 || frame.len() < usize::from(SCREEN_MIN_LEN) {
        return ScreenLane::default();
    }
    let be = |i: usize| usize::from(u16::from_be_bytes([frame[i], frame[i + 1]]));
    let other = kinds[usize::from(u16::from_ne_bytes([frame[12], frame[13]]))] == ETHER_OTHER;
    let total = be(16);
    let header = &frame[14..34];
    let sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let l4_ok = match frame[23] {
        17 => (8..=total.wrapping_sub(20)).contains(&be(38)),
        6 => (20..=total.wrapping_sub(20)).contains(&(usize::from(frame[46] >> 4) * 4)),
        _ => false,
    };
    let ipv4 = frame[12..15] == [0x08, 0x00, 0x45]
        && frame[20] & 0x3f == 0
        && frame[21] == 0
        && total >= 20
        && total <= frame.len() - 14
        && sum != 0
        && sum.is_multiple_of(0xffff)
        && l4_ok;
    ScreenLane { ipv4, other }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{
        Lanes, RangeMask, Screen, ScreenTask, Screened, SimdTask, SCREEN_MIN_LEN, SCREEN_STEP,
    };
    use crate::wire::parse::{ETHER_KINDS_LEN, ETHER_LOOKED_INTO, ETHER_OTHER};
    use std::arch::x86_64::*;
    use std::mem::offset_of;

    type RteMbuf = dpdk_sys::rte_mbuf;
    /// The mbuf fields the screen reads, as 8-byte words at these offsets: the buffer address;
    /// `data_off` (bits 0..16) and `nb_segs` (bits 32..48); `pkt_len` (bits 0..32) and
    /// `data_len` (bits 32..48).
    const AT_BUF: usize = offset_of!(RteMbuf, buf_addr);
    const AT_REARM: usize = offset_of!(RteMbuf, data_off);
    const AT_LENS: usize = offset_of!(RteMbuf, pkt_len);
    const _: () = assert!(
        offset_of!(RteMbuf, nb_segs) == AT_REARM + 4
            && offset_of!(RteMbuf, data_len) == AT_LENS + 4
            && AT_BUF + 8 <= AT_REARM
            && ETHER_OTHER == 0
    );

    /// A `base` for the gathers below, whose indexes are whole addresses.
    #[inline(always)]
    fn at(offset: usize) -> *const i64 {
        std::ptr::null::<i64>().wrapping_byte_add(offset)
    }

    /// `x`, as a value the compiler cannot see into (no instruction): it stays in a register
    /// or on the stack instead of being rebuilt from the constant pool where it is used.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn opaque(mut x: __m256i) -> __m256i {
        // SAFETY: an empty assembly block; it reads and writes only `x`'s register.
        unsafe {
            std::arch::asm!("/* {0} */", inout(ymm_reg) x, options(pure, nomem, nostack, preserves_flags));
        }
        x
    }

    /// A pointer the compiler cannot see into, as [`opaque`]. The block does not read through
    /// it (hence `nomem`): it only hides where the pointer came from.
    #[inline(always)]
    #[allow(clippy::pointers_in_nomem_asm_block)]
    fn opaque_ptr<T>(mut p: *const T) -> *const T {
        // SAFETY: as in `opaque`.
        unsafe {
            std::arch::asm!("/* {0} */", inout(reg) p, options(pure, nomem, nostack, preserves_flags));
        }
        p
    }

    /// The first 16 bytes the AVX-512 screen reads for a packet whose frame it may not read:
    /// ethertype IPv4, so not other, and version 0, so not IPv4 to the screen either.
    #[repr(C, align(16))]
    struct NotRead([u8; 16]);
    static NOT_READ: NotRead = NotRead([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0, 0]);
    /// `NOT_READ`'s bytes 12..16 read as one native-endian `u32`.
    const NOT_READ_HEAD: u32 = 0x0008;

    /// The AVX2 burst screen: four packets a step, eight 8-byte gathers (three of mbuf
    /// fields, five of frame bytes, the last four only when some packet of the step may be
    /// IPv4), checked lane by lane.
    ///
    /// # Safety
    /// The CPU must support AVX2; every pointer in `ptrs` must be a live mbuf the caller owns.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn screen_avx2(
        ptrs: &[*mut dpdk_sys::rte_mbuf],
        kinds: &[u8; ETHER_KINDS_LEN],
    ) -> Screened {
        let consts = Avx2Consts::new();
        // SAFETY: the caller's promises, passed on.
        unsafe { screen_avx2_with(ptrs, kinds, &consts) }
    }

    /// The AVX2 screen's constants, made opaque to the compiler where the screen's caller
    /// makes them (once for a poll of every port, in `run_screen_avx2`). Left as constants,
    /// they are broadcast again in every step that uses them (the compiler recomputes a
    /// constant rather than keep it in a register or on the stack, and a step has more live
    /// values than AVX2's 16 registers), and the length bounds, whose operands it can tell
    /// are non-negative, become unsigned compares, which AVX2 lacks (two sign flips and a
    /// constant each).
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2Consts {
        seg1: __m256i,
        min_len: __m256i,
        no_kind: __m256i,
        head: __m256i,
        k14: __m256i,
        k20: __m256i,
        k8: __m256i,
        k3c: __m256i,
        w0: __m256i,
        w1: __m256i,
        w48: __m256i,
        inv: __m256i,
        lo32: __m256i,
        one1: __m256i,
        frag_proto: __m256i,
        udp17: __m256i,
        tcp6: __m256i,
    }

    impl Avx2Consts {
        #[inline]
        #[target_feature(enable = "avx2")]
        fn new() -> Avx2Consts {
            let k = |x: i64| opaque(_mm256_set1_epi64x(x));
            Avx2Consts {
                seg1: k(1 << 32),
                min_len: k(i64::from(SCREEN_MIN_LEN - 1) << 32),
                no_kind: k(0xff),
                head: k(0x45_0008),
                k14: k(14 << 32),
                k20: k(20 << 32),
                k8: k(8 << 32),
                k3c: k(0x3c << 32),
                w0: k(0x0000_ffff_0000_0000),
                w1: k(0x0000_ffff_0000_ffff),
                w48: k(0x0000_ffff_ffff_ffff),
                inv: k(0xfffe_ffff),
                lo32: k(0xffff_ffff),
                one1: k(0x1_0001),
                frag_proto: k(0xff00_ff3f),
                udp17: k(17 << 24),
                tcp6: k(6 << 24),
            }
        }
    }

    /// [`screen_avx2`] with its constants made by the caller.
    ///
    /// # Safety
    /// As [`screen_avx2`].
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn screen_avx2_with(
        ptrs: &[*mut dpdk_sys::rte_mbuf],
        kinds: &[u8; ETHER_KINDS_LEN],
        k: &Avx2Consts,
    ) -> Screened {
        let c = _mm256_set1_epi64x;
        let zero = _mm256_setzero_si256();
        // Bytes 4 and 5 of each lane (frame bytes 16 and 17: the total length), big-endian,
        // into bytes 4 and 5.
        let total_bytes = _mm256_setr_epi8(
            -1, -1, -1, -1, 5, 4, -1, -1, -1, -1, -1, -1, 13, 12, -1, -1, -1, -1, -1, -1, 5, 4, -1,
            -1, -1, -1, -1, -1, 13, 12, -1, -1,
        );
        // Bytes 2 and 3 of each lane (frame bytes 38 and 39: the UDP length), big-endian,
        // into bytes 4 and 5.
        let udp_bytes = _mm256_setr_epi8(
            -1, -1, -1, -1, 3, 2, -1, -1, -1, -1, -1, -1, 11, 10, -1, -1, -1, -1, -1, -1, 3, 2, -1,
            -1, -1, -1, -1, -1, 11, 10, -1, -1,
        );
        let Avx2Consts {
            seg1,
            min_len,
            no_kind,
            head,
            k14,
            k20,
            k8,
            k3c,
            w0,
            w1,
            w48,
            inv,
            lo32,
            one1,
            frag_proto,
            udp17,
            tcp6,
        } = *k;
        // The kinds table's address, kept in a register rather than loaded again every step.
        let table = opaque_ptr(kinds.as_ptr()).cast::<i64>();
        let mut out = Screened::default();
        let mut bytes = zero;
        let steps = ptrs.len().min(32) / SCREEN_STEP;
        // Bit 0 of step `step`'s four (each step's masks are multiplied by it: one
        // instruction, where a shift by a variable count takes three).
        let mut bit = 1u32;
        for p in ptrs[..steps * SCREEN_STEP].chunks_exact(SCREEN_STEP) {
            // SAFETY: `p` is 4 pointers; an unaligned load.
            let p = unsafe { _mm256_loadu_si256(p.as_ptr().cast::<__m256i>()) };
            // SAFETY: each lane of `p` is a live mbuf (the caller's promise); the words read
            // lie inside its header (`AT_*` are field offsets of `rte_mbuf`).
            let buf = unsafe { _mm256_i64gather_epi64::<1>(at(AT_BUF), p) };
            // SAFETY: as above.
            let rearm = unsafe { _mm256_i64gather_epi64::<1>(at(AT_REARM), p) };
            // SAFETY: as above.
            let lens = unsafe { _mm256_i64gather_epi64::<1>(at(AT_LENS), p) };
            bytes = _mm256_add_epi64(bytes, _mm256_and_si256(lens, c(0xffff_ffff)));
            // Lengths are compared where they sit, in bits 32..48 of a lane (data_len's
            // place in `lens`).
            let hi16 = c(0xffff << 32);
            let data_len = _mm256_and_si256(lens, hi16);
            let one_segment = _mm256_cmpeq_epi64(_mm256_and_si256(rearm, hi16), seg1);
            let long = _mm256_cmpgt_epi64(data_len, min_len);
            let readable = _mm256_and_si256(one_segment, long);
            // The frame's first byte: buf_addr + data_off.
            let frame = _mm256_add_epi64(buf, _mm256_and_si256(rearm, c(0xffff)));
            // SAFETY: a lane is read only when `readable`: one segment holding at least
            // SCREEN_MIN_LEN bytes from buf_addr + data_off (DPDK keeps them inside the
            // mbuf's data room), and bytes 12..20 lie within them. The ethertype's entry and
            // the 7 bytes after it lie inside `kinds` (ETHER_KINDS_LEN = 2^16 + 7).
            // Lanes not read hold 0 (not IPv4) and kind 0xff (not ETHER_OTHER).
            let g0 = unsafe { _mm256_mask_i64gather_epi64::<1>(zero, at(12), frame, readable) };
            let ethertype = _mm256_and_si256(g0, c(0xffff));
            // SAFETY: as above (the table entries).
            let kind =
                unsafe { _mm256_mask_i64gather_epi64::<1>(no_kind, table, ethertype, readable) };
            let other = _mm256_cmpeq_epi64(_mm256_and_si256(kind, c(0xff)), zero);
            out.other |= (_mm256_movemask_pd(_mm256_castsi256_pd(other)) as u32).wrapping_mul(bit);
            // Ethertype 0x0800, then version 4 and IHL 5.
            let v4 = _mm256_cmpeq_epi64(_mm256_and_si256(g0, c(0xff_ffff)), head);
            let step_bit = bit;
            bit <<= SCREEN_STEP;
            if _mm256_movemask_pd(_mm256_castsi256_pd(v4)) == 0 {
                continue;
            }
            // SAFETY: as above, for lanes that are `readable` (all of `v4`'s are): bytes
            // 20..52 lie within the first segment. Lanes not read hold 0: protocol 0, so
            // neither UDP nor TCP, and not accepted below.
            let g1 = unsafe { _mm256_mask_i64gather_epi64::<1>(zero, at(20), frame, v4) };
            // SAFETY: as above.
            let g2 = unsafe { _mm256_mask_i64gather_epi64::<1>(zero, at(28), frame, v4) };
            // SAFETY: as above.
            let g3 = unsafe { _mm256_mask_i64gather_epi64::<1>(zero, at(36), frame, v4) };
            // Frame bytes 16 and 17 (the total length), big-endian, into bits 32..48. Bad
            // when longer than the segment: total > data_len - 14. (The L4 checks below
            // imply total >= 20.)
            let total = _mm256_shuffle_epi8(g0, total_bytes);
            let mut bad = _mm256_cmpgt_epi64(_mm256_add_epi64(total, k14), data_len);
            // The header checksum: the ten 16-bit words of bytes 14..34 summed exactly:
            // pairs of words into 32-bit halves (leaving out the ethertype, bytes 12..14,
            // and the L4 header's first word, bytes 34..36), then the halves together (under
            // 2^20). The header is right when its words sum to a non-zero multiple of 0xffff
            // (the byte order only rotates the sum); a header with version 4 sums to more
            // than zero, and a multiple is found by one multiply by 0xffff's inverse modulo
            // 2^32 (0xfffe_ffff).
            let words = |x: __m256i, low: __m256i| {
                _mm256_add_epi32(_mm256_and_si256(x, low), _mm256_srli_epi32::<16>(x))
            };
            let tail = _mm256_and_si256(g2, w48);
            let s = _mm256_add_epi32(
                _mm256_add_epi32(words(g0, w0), words(g1, w1)),
                words(tail, w1),
            );
            let s = _mm256_add_epi32(s, _mm256_srli_epi64::<32>(s));
            let q = _mm256_mul_epu32(s, inv);
            bad = _mm256_or_si256(bad, _mm256_cmpgt_epi64(_mm256_and_si256(q, lo32), one1));
            // Frame bytes 20, 21 and 23: no MF, no fragment offset (DF and the reserved bit
            // may be set), protocol UDP or TCP; one masked compare each.
            let fields = _mm256_and_si256(g1, frag_proto);
            let udp = _mm256_cmpeq_epi64(fields, udp17);
            let tcp = _mm256_cmpeq_epi64(fields, tcp6);
            // The L4 header's length, in bits 32..48: UDP's length field (bytes 38 and 39),
            // or TCP's data offset (the high nibble of byte 46, bits 16..24 of g4) times 4.
            // Bad when below the header's own size (8 or 20) or past the IP payload:
            // length + 20 > total. A step without TCP (lanes neither UDP nor TCP fail
            // anyway) needs neither bytes 44..52 nor the blends.
            let udp_len = _mm256_shuffle_epi8(g3, udp_bytes);
            let (l4_len, l4_min) = if _mm256_testz_si256(tcp, tcp) != 0 {
                (udp_len, k8)
            } else {
                // SAFETY: as above, for the TCP lanes (all of them are in `v4`).
                let g4 = unsafe { _mm256_mask_i64gather_epi64::<1>(zero, at(44), frame, tcp) };
                let tcp_len = _mm256_and_si256(_mm256_slli_epi64::<14>(g4), k3c);
                (
                    _mm256_blendv_epi8(tcp_len, udp_len, udp),
                    _mm256_blendv_epi8(k20, k8, udp),
                )
            };
            bad = _mm256_or_si256(
                bad,
                _mm256_or_si256(
                    _mm256_cmpgt_epi64(l4_min, l4_len),
                    _mm256_cmpgt_epi64(_mm256_add_epi64(l4_len, k20), total),
                ),
            );
            // Opaque: knowing each lane all ones or all zeroes, the compiler would narrow the
            // mask to 32-bit lanes before taking its sign bits (four instructions more).
            let ok = opaque(_mm256_andnot_si256(bad, _mm256_or_si256(udp, tcp)));
            out.ipv4 |= (_mm256_movemask_pd(_mm256_castsi256_pd(ok)) as u32).wrapping_mul(step_bit);
        }
        let mut lanes = [0u64; 4];
        // SAFETY: `lanes` is 32 writable bytes; an unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast::<__m256i>(), bytes) };
        out.bytes = lanes.iter().sum();
        out.screened = steps * SCREEN_STEP;
        out
    }

    /// The AVX2 kernel; only made by `run_avx2`.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2(());

    /// The AVX-512 kernel; only made by `run_avx512`.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512(());

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn run_avx2<T: SimdTask>(task: T) -> T::Output {
        task.run(Avx2(()))
    }

    /// # Safety
    /// The CPU must support AVX-512 F and VL, and AVX2.
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    pub unsafe fn run_avx512<T: SimdTask>(task: T) -> T::Output {
        task.run(Avx512(()))
    }

    /// The AVX2 screen and its constants; only made by `run_screen_avx2`.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2Screen(Avx2Consts);

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn run_screen_avx2<T: ScreenTask>(task: T) -> T::Output {
        task.run(Avx2Screen(Avx2Consts::new()))
    }

    impl Screen for Avx2Screen {
        #[inline(always)]
        unsafe fn screen(
            self,
            ptrs: &[*mut dpdk_sys::rte_mbuf],
            kinds: &[u8; ETHER_KINDS_LEN],
        ) -> Screened {
            // SAFETY: an `Avx2Screen` is only made inside `run_screen_avx2`, whose caller
            // checked the CPU; the pointers are the caller's promise.
            unsafe { screen_avx2_with(ptrs, kinds, &self.0) }
        }
    }

    impl RangeMask for Avx2 {
        #[inline(always)]
        fn range_mask(self, bounds: &[Lanes; 10], key: &[i32; 5]) -> u32 {
            // SAFETY: an `Avx2` is only made inside `run_avx2`, whose caller checked the CPU.
            unsafe { range_mask_avx2(bounds, key) }
        }
    }

    impl RangeMask for Avx512 {
        #[inline(always)]
        fn range_mask(self, bounds: &[Lanes; 10], key: &[i32; 5]) -> u32 {
            // SAFETY: an `Avx512` is only made inside `run_avx512`, whose caller checked the CPU.
            unsafe { range_mask_avx512(bounds, key) }
        }
    }

    /// The AVX-512 burst screen: [`screen_avx2`]'s checks, every packet of the burst
    /// screened. The mbuf fields, the ethertype and its kind are read packet by packet
    /// without a vector (see the first loop); only the steps of eight that hold a frame that
    /// may be IPv4 then check those frames' headers in vectors, with the lane masks in mask
    /// registers (each compare refines the mask of the one before).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW; every pointer in `ptrs` must be a live mbuf the
    /// caller owns.
    ///
    /// Kept out of line: inlined into the pass-through loop, its per-lane reads spill about
    /// twice as much, and the loop ran about six cycles a packet slower on `net_null`.
    #[inline(never)]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw")]
    pub unsafe fn screen_avx512(
        ptrs: &[*mut dpdk_sys::rte_mbuf],
        kinds: &[u8; ETHER_KINDS_LEN],
    ) -> Screened {
        const STEP: usize = 8;
        let c = _mm512_set1_epi64;
        let zero = _mm512_setzero_si512();
        // As in `screen_avx2`, for each 128-bit half of the register (dwords listed last
        // first): bytes 5, 4 and 13, 12 into bytes 4, 5 and 12, 13; the others zeroed.
        let total_bytes = _mm512_set4_epi32(0xffff_0c0d_u32 as i32, -1, 0xffff_0405_u32 as i32, -1);
        // Bytes 3, 2 and 11, 10 likewise.
        let udp_bytes = _mm512_set4_epi32(0xffff_0a0b_u32 as i32, -1, 0xffff_0203_u32 as i32, -1);
        // The kinds compared below are those of `ETHER_LOOKED_INTO`, the list `kinds` is
        // made from.
        debug_assert!(std::ptr::eq(kinds, crate::wire::parse::ether_kinds()));
        let mut out = Screened::default();
        let n = ptrs.len().min(32);
        // First, packet by packet: the mbuf fields at their own widths (the PMD has just
        // written most of them, as 16- and 32-bit stores that may still wait in the store
        // buffer, and a load spanning several of them cannot take its bytes from there) and
        // the frame's bytes 12..16 by one load, kept for the vector compares below. A lane
        // that is not one segment of at least SCREEN_MIN_LEN bytes reads `NOT_READ`
        // instead, which is neither kind. A burst with no frame that may be IPv4 is settled
        // by these loads and a few compares of all its lanes at once: gathering the same
        // bytes and the ethertype's kind from the table (eight loads behind each
        // instruction, the second gather waiting on the first) cost about twice as much.
        let mut bytes = 0u64;
        // Lanes past the burst hold NOT_READ's head.
        let mut heads = [NOT_READ_HEAD; 32];
        for (head, &m) in heads.iter_mut().zip(&ptrs[..n]) {
            // SAFETY: `m` is a live mbuf (the caller's promise), and nothing writes it while
            // the reference lives.
            let m = unsafe { &*m.cast_const() };
            let frame = if (m.nb_segs == 1) & (m.data_len >= SCREEN_MIN_LEN) {
                bytes += u64::from(m.data_len);
                m.buf_addr
                    .cast::<u8>()
                    .cast_const()
                    .wrapping_add(usize::from(m.data_off))
            } else {
                bytes += u64::from(m.pkt_len);
                NOT_READ.0.as_ptr()
            };
            let at = frame.wrapping_add(12).cast::<u32>();
            // SAFETY: a readable lane's first segment holds at least SCREEN_MIN_LEN (> 16)
            // bytes from `frame`; `NOT_READ` holds 16.
            *head = unsafe { at.read_unaligned() };
        }
        let c32 = _mm512_set1_epi32;
        let (low, high) = heads.split_at(16);
        // SAFETY: each half of `heads` is 16 u32s, one vector (an unaligned load).
        let h = [low, high].map(|half| unsafe { _mm512_loadu_si512(half.as_ptr().cast()) });
        // Bytes 12..15 are 08 00 45: IPv4 with IHL 5, checked in the steps below.
        let v4 =
            h.map(|h| _mm512_cmpeq_epi32_mask(_mm512_and_si512(h, c32(0xff_ffff)), c32(0x45_0008)));
        let v4 = u32::from(v4[0]) | u32::from(v4[1]) << 16;
        // An ethertype none of ETHER_LOOKED_INTO is what `kinds` calls ETHER_OTHER (the
        // table is built from the same list).
        let other = h.map(|h| {
            let ethertype = _mm512_and_si512(h, c32(0xffff));
            ETHER_LOOKED_INTO.iter().fold(0xffff, |o, &t| {
                o & _mm512_cmpneq_epi32_mask(ethertype, c32(i32::from(t)))
            })
        });
        out.other = u32::from(other[0]) | u32::from(other[1]) << 16;
        out.bytes = bytes;
        out.screened = n;
        if v4 == 0 {
            return out;
        }
        for step in 0..n.div_ceil(STEP) {
            let v4 = (v4 >> (step * STEP)) as u8;
            if v4 == 0 {
                continue;
            }
            // The frame address and data_len (in bits 32..48, where the lengths below are
            // compared) of each lane that may be IPv4; zero for the others.
            let base = step * STEP;
            let mut frames = [0i64; STEP];
            let mut lens = [0i64; STEP];
            for (j, &m) in ptrs[base..n.min(base + STEP)].iter().enumerate() {
                if v4 >> j & 1 != 0 {
                    // SAFETY: as above.
                    let m = unsafe { &*m.cast_const() };
                    frames[j] = (m.buf_addr as i64).wrapping_add(i64::from(m.data_off));
                    lens[j] = i64::from(m.data_len) << 32;
                }
            }
            // SAFETY: eight i64s, one vector (an unaligned load).
            let frame = unsafe { _mm512_loadu_si512(frames.as_ptr().cast()) };
            // SAFETY: as above.
            let data_len = unsafe { _mm512_loadu_si512(lens.as_ptr().cast()) };
            // SAFETY: as in `screen_avx2`: only `v4` lanes (all readable) are read.
            let g0 = unsafe { _mm512_mask_i64gather_epi64::<1>(zero, v4, frame, at(12)) };
            // SAFETY: as in `screen_avx2`: only `v4` lanes (all readable) are read.
            let g1 = unsafe { _mm512_mask_i64gather_epi64::<1>(zero, v4, frame, at(20)) };
            // SAFETY: as above.
            let g2 = unsafe { _mm512_mask_i64gather_epi64::<1>(zero, v4, frame, at(28)) };
            // SAFETY: as above.
            let g3 = unsafe { _mm512_mask_i64gather_epi64::<1>(zero, v4, frame, at(36)) };
            // SAFETY: as above.
            let g4 = unsafe { _mm512_mask_i64gather_epi64::<1>(zero, v4, frame, at(44)) };
            let fields = _mm512_and_si512(g1, c(0xff00_ff3f));
            let udp = _mm512_mask_cmpeq_epi64_mask(v4, fields, c(17 << 24));
            let tcp = _mm512_mask_cmpeq_epi64_mask(v4, fields, c(6 << 24));
            let total = _mm512_shuffle_epi8(g0, total_bytes);
            let udp_len = _mm512_shuffle_epi8(g3, udp_bytes);
            let tcp_len = _mm512_and_si512(_mm512_slli_epi64::<14>(g4), c(0x3c << 32));
            let l4_len = _mm512_mask_blend_epi64(udp, tcp_len, udp_len);
            let l4_min = _mm512_mask_blend_epi64(udp, c(20 << 32), c(8 << 32));
            let mut ok = udp | tcp;
            ok = _mm512_mask_cmple_epi64_mask(ok, _mm512_add_epi64(total, c(14 << 32)), data_len);
            ok = _mm512_mask_cmple_epi64_mask(ok, l4_min, l4_len);
            ok = _mm512_mask_cmple_epi64_mask(ok, _mm512_add_epi64(l4_len, c(20 << 32)), total);
            let words = |x: __m512i, low: i64| {
                _mm512_add_epi32(_mm512_and_si512(x, c(low)), _mm512_srli_epi32::<16>(x))
            };
            let tail = _mm512_and_si512(g2, c(0x0000_ffff_ffff_ffff));
            let s = _mm512_add_epi32(
                _mm512_add_epi32(
                    words(g0, 0x0000_ffff_0000_0000),
                    words(g1, 0x0000_ffff_0000_ffff),
                ),
                words(tail, 0x0000_ffff_0000_ffff),
            );
            let s = _mm512_add_epi32(s, _mm512_srli_epi64::<32>(s));
            let q = _mm512_mul_epu32(s, c(0xfffe_ffff));
            ok = _mm512_mask_cmple_epu64_mask(ok, _mm512_and_si512(q, c(0xffff_ffff)), c(0x1_0001));
            out.ipv4 |= u32::from(ok) << (step * STEP);
        }
        out
    }

    /// # Safety
    /// The CPU must support SSE2.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub unsafe fn range_mask_sse2(bounds: &[Lanes; 10], key: &[i32; 5]) -> u32 {
        let mut bad = [_mm_setzero_si128(); 2];
        for d in 0..5 {
            let k = _mm_set1_epi32(key[d]);
            for (h, bad) in bad.iter_mut().enumerate() {
                let (lo, hi) = (&bounds[2 * d].0[4 * h..], &bounds[2 * d + 1].0[4 * h..]);
                // SAFETY: `Lanes` is 32 bytes aligned to 32, so each half is 16 aligned bytes.
                let lo = unsafe { _mm_load_si128(lo.as_ptr().cast()) };
                // SAFETY: as above.
                let hi = unsafe { _mm_load_si128(hi.as_ptr().cast()) };
                *bad = _mm_or_si128(
                    *bad,
                    _mm_or_si128(_mm_cmpgt_epi32(lo, k), _mm_cmpgt_epi32(k, hi)),
                );
            }
        }
        let m = _mm_movemask_ps(_mm_castsi128_ps(bad[0]))
            | _mm_movemask_ps(_mm_castsi128_ps(bad[1])) << 4;
        !(m as u32) & 0xff
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn range_mask_avx2(bounds: &[Lanes; 10], key: &[i32; 5]) -> u32 {
        let mut bad = _mm256_setzero_si256();
        for d in 0..5 {
            let k = _mm256_set1_epi32(key[d]);
            // SAFETY: `Lanes` is 32 bytes aligned to 32.
            let lo = unsafe { _mm256_load_si256(bounds[2 * d].0.as_ptr().cast()) };
            // SAFETY: as above.
            let hi = unsafe { _mm256_load_si256(bounds[2 * d + 1].0.as_ptr().cast()) };
            bad = _mm256_or_si256(
                bad,
                _mm256_or_si256(_mm256_cmpgt_epi32(lo, k), _mm256_cmpgt_epi32(k, hi)),
            );
        }
        !(_mm256_movemask_ps(_mm256_castsi256_ps(bad)) as u32) & 0xff
    }

    /// # Safety
    /// The CPU must support AVX-512 F and VL.
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    unsafe fn range_mask_avx512(bounds: &[Lanes; 10], key: &[i32; 5]) -> u32 {
        let mut m: __mmask8 = 0xff;
        for d in 0..5 {
            let k = _mm256_set1_epi32(key[d]);
            // SAFETY: `Lanes` is 32 bytes aligned to 32.
            let lo = unsafe { _mm256_load_si256(bounds[2 * d].0.as_ptr().cast()) };
            // SAFETY: as above.
            let hi = unsafe { _mm256_load_si256(bounds[2 * d + 1].0.as_ptr().cast()) };
            m = _mm256_mask_cmp_epi32_mask::<_MM_CMPINT_NLT>(m, k, lo);
            m = _mm256_mask_cmp_epi32_mask::<_MM_CMPINT_LE>(m, k, hi);
        }
        u32::from(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Mask<'a>(&'a [Lanes; 10], &'a [i32; 5]);

    impl SimdTask for Mask<'_> {
        type Output = u32;
        #[inline(always)]
        fn run<K: RangeMask>(self, k: K) -> u32 {
            k.range_mask(self.0, self.1)
        }
    }

    fn levels() -> Vec<Simd> {
        [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .map(Simd::detect_up_to)
            .collect()
    }

    #[test]
    fn level_names() {
        for l in [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512] {
            let name = match l {
                SimdLevel::Portable => "portable",
                SimdLevel::Avx2 => "avx2",
                SimdLevel::Avx512 => "avx512",
            };
            assert_eq!(SimdLevel::from_name(name), Some(l));
        }
        assert_eq!(SimdLevel::from_name("AVX2"), None);
        assert_eq!(SimdLevel::from_name(""), None);
    }

    #[test]
    fn levels_are_capped_by_the_cpu() {
        assert_eq!(Simd::portable().level(), SimdLevel::Portable);
        assert!(Simd::detect_up_to(SimdLevel::Avx2).level() <= SimdLevel::Avx2);
        assert!(Simd::detect_up_to(SimdLevel::Avx2).level() <= Simd::detect().level());
        println!("this CPU: {:?}", Simd::detect().level());
    }

    /// Frames for the screen: built UDP, TCP, ICMP, IPv6 and ARP frames (64 bytes and longer),
    /// VLAN-tagged ones, zero-filled ones and random bytes, each possibly damaged: a byte
    /// of 12..52 replaced, the total length, UDP length or TCP data offset set to a value
    /// near its bound (the checksum then recomputed or not), the segment cut short.
    fn screen_frame() -> impl Strategy<Value = (Vec<u8>, u16)> {
        use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
        use crate::wire::tcp::Flags;
        use std::net::{Ipv4Addr, Ipv6Addr};
        let base = (0..10u8, 0..64usize).prop_map(|(kind, pad)| {
            let v4 = IpSpec::v4(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(198, 51, 100, 10));
            let payload = vec![0x5a; pad];
            match kind {
                0 => FrameSpec::new(v4, L4Spec::udp(40000, 53, &payload)).build(),
                1 => FrameSpec::new(v4, L4Spec::tcp(40000, 80, Flags::SYN)).build(),
                2 => FrameSpec::new(v4, L4Spec::icmp_echo(7, 1)).build(),
                3 => FrameSpec::new(
                    IpSpec::v6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED),
                    L4Spec::udp(1, 2, &payload),
                )
                .build(),
                4 => crate::wire::builder::arp_request(
                    crate::wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]),
                    Ipv4Addr::new(10, 0, 0, 1),
                    Ipv4Addr::new(10, 0, 0, 2),
                ),
                5 => vec![0; 60 + pad],
                // An S-tag, then a legacy QinQ tag, before the IPv4 header: ethertypes the
                // straight-line parser leaves to the full parser, so neither kind.
                8 | 9 => {
                    let mut f = FrameSpec::new(v4, L4Spec::udp(1, 2, &payload)).build();
                    let tpid: [u8; 2] = if kind == 8 {
                        [0x88, 0xa8]
                    } else {
                        [0x91, 0x00]
                    };
                    f.splice(12..12, [tpid[0], tpid[1], 0x00, 0x05]);
                    f
                }
                _ => {
                    let mut f = FrameSpec::new(v4, L4Spec::udp(1, 2, &payload)).build();
                    // An 802.1Q tag before the IPv4 header.
                    f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
                    f
                }
            }
        });
        let any_frame = prop_oneof![
            4 => base,
            1 => proptest::collection::vec(any::<u8>(), 0..100),
        ];
        (
            any_frame,
            0..6u8,
            12..52usize,
            any::<u8>(),
            any::<bool>(),
            0..80usize,
            prop_oneof![5 => Just(1u16), 1 => Just(2u16)],
        )
            .prop_map(|(mut f, damage, at, byte, refill, cut, segs)| {
                let set_be = |f: &mut Vec<u8>, i: usize, v: usize| {
                    if f.len() >= i + 2 {
                        f[i..i + 2].copy_from_slice(&(v as u16).to_be_bytes());
                    }
                };
                let total = f.len().saturating_sub(14);
                let near = usize::from(byte % 5);
                match damage {
                    1 if at < f.len() => f[at] = byte,
                    2 => set_be(&mut f, 16, (total + near).saturating_sub(2)),
                    3 => set_be(&mut f, 38, (total + near).saturating_sub(22)),
                    4 if f.len() > 46 => f[46] = byte,
                    5 => f.truncate(f.len().saturating_sub(cut)),
                    _ => {}
                }
                if refill && f.len() >= 34 && f[12..15] == [0x08, 0x00, 0x45] {
                    crate::wire::ipv4::Packet::new_unchecked(&mut f[14..]).fill_checksum();
                }
                (f, segs)
            })
    }

    /// Fake mbufs over `frames` (each at a data offset of 128 in its own buffer), for the
    /// kernels: only the fields the screen reads are set.
    fn fake_mbufs(frames: &[(Vec<u8>, u16)], room: &mut [Vec<u8>]) -> Vec<dpdk_sys::rte_mbuf> {
        frames
            .iter()
            .zip(room.iter_mut())
            .map(|((f, segs), buf)| {
                buf.clear();
                buf.resize(128, 0xee);
                buf.extend_from_slice(f);
                // SAFETY: rte_mbuf is plain data (integers, raw pointers, unions of them);
                // all zeroes is a valid value of each field.
                let mut m: dpdk_sys::rte_mbuf = unsafe { std::mem::zeroed() };
                m.buf_addr = buf.as_mut_ptr().cast();
                m.data_off = 128;
                m.data_len = f.len() as u16;
                m.pkt_len = f.len() as u32 + 1000 * u32::from(*segs - 1);
                m.nb_segs = *segs;
                m.buf_len = buf.len() as u16;
                m
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Every level's screen agrees with the scalar reference packet by packet, and its
        /// byte count with the sum of the screened packets' lengths.
        #[test]
        fn screen_agrees_with_reference(frames in proptest::collection::vec(screen_frame(), 0..33)) {
            let kinds = crate::wire::parse::ether_kinds();
            let mut room = vec![Vec::with_capacity(256); frames.len()];
            let mut mbufs = fake_mbufs(&frames, &mut room);
            let ptrs: Vec<*mut dpdk_sys::rte_mbuf> =
                mbufs.iter_mut().map(|m| m as *mut dpdk_sys::rte_mbuf).collect();
            for s in levels() {
                // SAFETY: each pointer is a live rte_mbuf (in `mbufs`) whose buf_addr +
                // data_off holds data_len bytes (in `room`); both outlive the call.
                let got = unsafe { s.screen(&ptrs, kinds) };
                if s.level() == SimdLevel::Portable {
                    prop_assert_eq!(got, Screened::default());
                    continue;
                }
                let whole_steps = frames.len() / SCREEN_STEP * SCREEN_STEP;
                prop_assert_eq!(got.screened, if s.level() == SimdLevel::Avx512 { frames.len() } else { whole_steps });
                let mut bytes = 0;
                for (j, ((f, segs), m)) in frames.iter().zip(&mbufs).enumerate().take(got.screened) {
                    let want = screen_one(f, *segs, kinds);
                    prop_assert_eq!(got.ipv4 >> j & 1 == 1, want.ipv4, "{:?} frame {} {:02x?}", s.level(), j, f);
                    prop_assert_eq!(got.other >> j & 1 == 1, want.other, "{:?} frame {} {:02x?}", s.level(), j, f);
                    bytes += u64::from(m.pkt_len);
                }
                prop_assert_eq!(got.bytes, bytes);
                prop_assert_eq!((got.ipv4 | got.other).checked_shr(got.screened as u32).unwrap_or(0), 0);
            }
        }

        /// What the reference accepts, the straight-line parser accepts as the same kind (so
        /// the worker may take the screen's word for it).
        #[test]
        fn screen_reference_implies_the_parser((f, segs) in screen_frame()) {
            let kinds = crate::wire::parse::ether_kinds();
            let lane = screen_one(&f, segs, kinds);
            let parsed = crate::wire::parse::classify_common(&f);
            if lane.ipv4 {
                prop_assert_eq!(parsed, Some(crate::wire::L3::Ipv4), "{:02x?}", f);
            }
            if lane.other {
                prop_assert_eq!(parsed, Some(crate::wire::L3::Other), "{:02x?}", f);
            }
        }
    }

    /// The screen takes the benchmark's frames and plain TCP, and leaves ICMP, IPv6, ARP and
    /// tagged frames to the scalar checks.
    #[test]
    fn screen_reference_on_fixtures() {
        use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
        use crate::wire::tcp::Flags;
        use std::net::Ipv4Addr;
        let kinds = crate::wire::parse::ether_kinds();
        let v4 = IpSpec::v4(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(198, 51, 100, 10));
        let udp = FrameSpec::new(v4.clone(), L4Spec::udp(40000, 53, &[0x5a; 22])).build();
        assert_eq!(udp.len(), 64);
        assert!(screen_one(&udp, 1, kinds).ipv4);
        assert!(!screen_one(&udp, 2, kinds).ipv4);
        assert!(!screen_one(&udp[..51], 1, kinds).ipv4);
        let tcp = FrameSpec::new(v4.clone(), L4Spec::tcp(1, 2, Flags::SYN)).build();
        assert!(screen_one(&tcp, 1, kinds).ipv4);
        let icmp = FrameSpec::new(v4, L4Spec::icmp_echo(1, 2)).build();
        assert_eq!(screen_one(&icmp, 1, kinds), ScreenLane::default());
        assert!(screen_one(&[0; 64], 1, kinds).other);
        let mut bad = udp.clone();
        bad[24] ^= 1;
        assert!(!screen_one(&bad, 1, kinds).ipv4);

        // A burst of 30: UDP, TCP, the damaged UDP, zero-filled, ICMP; the last two are left
        // over (not a whole step).
        let kinds_of = [udp, tcp, bad, vec![0; 64], icmp];
        let frames: Vec<(Vec<u8>, u16)> = (0..30).map(|i| (kinds_of[i % 5].clone(), 1)).collect();
        let mut room = vec![Vec::with_capacity(256); frames.len()];
        let mut mbufs = fake_mbufs(&frames, &mut room);
        let ptrs: Vec<*mut dpdk_sys::rte_mbuf> = mbufs
            .iter_mut()
            .map(|m| m as *mut dpdk_sys::rte_mbuf)
            .collect();
        for s in levels()
            .into_iter()
            .filter(|s| s.level() != SimdLevel::Portable)
        {
            // SAFETY: as in `screen_agrees_with_reference`.
            let got = unsafe { s.screen(&ptrs, kinds) };
            let n = got.screened;
            assert_eq!(
                n,
                if s.level() == SimdLevel::Avx512 {
                    30
                } else {
                    28
                }
            );
            let every = |k: usize| {
                (0..n)
                    .filter(|i| i % 5 == k)
                    .map(|i| 1u32 << i)
                    .sum::<u32>()
            };
            assert_eq!(got.ipv4, every(0) | every(1), "{:?}", s.level());
            assert_eq!(got.other, every(3), "{:?}", s.level());
            let lens: u64 = frames[..n].iter().map(|(f, _)| f.len() as u64).sum();
            assert_eq!(got.bytes, lens);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every build agrees with the scalar reference, around the bounds and at the ends of
        /// the range (signed compares: `i32::MIN`, `i32::MAX`).
        #[test]
        fn every_level_agrees_with_scalar(
            raw in proptest::collection::vec((0..6i32, 0..6i32), 5 * LANES),
            key in proptest::array::uniform5(0..6i32),
            ends in any::<bool>(),
        ) {
            let v = |x: i32| if ends { [i32::MIN, -1, 0, 1, i32::MAX - 1, i32::MAX][x as usize] } else { x };
            let mut bounds = [Lanes::default(); 10];
            for (i, &(a, b)) in raw.iter().enumerate() {
                let (d, j) = (i / LANES, i % LANES);
                bounds[2 * d].0[j] = v(a);
                bounds[2 * d + 1].0[j] = v(b);
            }
            let key = key.map(v);
            let want = range_mask_scalar(&bounds, &key);
            for s in levels() {
                prop_assert_eq!(s.run(Mask(&bounds, &key)), want, "{:?}", s.level());
            }
        }
    }
}
