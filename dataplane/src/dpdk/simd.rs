//! SIMD kernels chosen at run time, for the classifier's leaf scan (`classify::cuts`).
//!
//! The kernel compares a key with eight entries' ranges at once ([`RangeMask::range_mask`]). It
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
    /// AVX-512 F and VL: 256-bit compares into mask registers, chained.
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

/// The widest level the CPU runs.
fn cpu_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lanes, RangeMask, SimdTask};
    use std::arch::x86_64::*;

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
    fn levels_are_capped_by_the_cpu() {
        assert_eq!(Simd::portable().level(), SimdLevel::Portable);
        assert!(Simd::detect_up_to(SimdLevel::Avx2).level() <= SimdLevel::Avx2);
        assert!(Simd::detect_up_to(SimdLevel::Avx2).level() <= Simd::detect().level());
        println!("this CPU: {:?}", Simd::detect().level());
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
