//! `-m u32` (xt_u32): tests of 32-bit words read from the packet from its network header
//! ([`super::payload`]: a datagram that came in fragments is read as reassembled), each word
//! shifted, masked or used to move on (`@`) and compared against ranges, all tests of a match
//! holding (`&&`).
//!
//! Evaluated as the kernel's `u32_match_it`: a read of four bytes that does not lie within the
//! datagram (or whose offset overflows 32 bits) makes the match false (negated: true), and a
//! shift takes its count modulo 32 as the kernel's compiled shift does on x86.

use super::payload::View;
use super::Wire;

/// `XT_U32_MAXSIZE`: libxt_u32 takes at most this many tests, numbers per location and
/// ranges per test.
pub const MAX_SIZE: usize = 10;

/// An operator between a location's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `&`: mask the word.
    And,
    /// `<<`.
    Shl,
    /// `>>`.
    Shr,
    /// `@`: move on by the word and read the word at the number from there.
    At,
}

/// One test: the word at `start`, then the operators in order, in one of `ranges`
/// (inclusive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Test {
    pub start: u32,
    pub ops: Vec<(Op, u32)>,
    pub ranges: Vec<(u32, u32)>,
}

/// One `-m u32 --u32 TESTS`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct U32Match {
    pub tests: Vec<Test>,
    pub invert: bool,
}

/// The big-endian word at `at`, when the four bytes lie within `b`.
fn word(b: &[u8], at: u32) -> Option<u32> {
    let at = at as usize;
    let w = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

impl Test {
    /// Whether the test holds on the datagram `b` (`false` where the kernel stops on a read
    /// outside it).
    pub fn holds(&self, b: &[u8]) -> bool {
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        if len < 4 || self.start > len - 4 {
            return false;
        }
        let Some(mut val) = word(b, self.start) else {
            return false;
        };
        let mut at = 0u32;
        for &(op, n) in &self.ops {
            match op {
                Op::And => val &= n,
                Op::Shl => val = val.wrapping_shl(n),
                Op::Shr => val = val.wrapping_shr(n),
                Op::At => {
                    let Some(a) = at.checked_add(val) else {
                        return false;
                    };
                    at = a;
                    match at.checked_add(4) {
                        Some(end) if end <= len && n <= len - at - 4 => {}
                        _ => return false,
                    }
                    let Some(v) = word(b, at + n) else {
                        return false;
                    };
                    val = v;
                }
            }
        }
        self.ranges.iter().any(|&(lo, hi)| lo <= val && val <= hi)
    }
}

impl U32Match {
    /// xt_u32's `u32_mt`.
    pub fn holds(&self, w: &Wire<'_>) -> bool {
        super::payload::with_view(w, |v| self.matches(v)) != self.invert
    }

    /// `u32_match_it` over the datagram of `v`: every test holds.
    pub fn matches(&self, v: View<'_>) -> bool {
        self.tests.iter().all(|t| t.holds(v.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start: u32, ops: &[(Op, u32)], ranges: &[(u32, u32)]) -> Test {
        Test {
            start,
            ops: ops.to_vec(),
            ranges: ranges.to_vec(),
        }
    }

    #[test]
    fn reads_outside_the_datagram_fail() {
        let b = [0x45, 0, 0, 20, 1, 2, 3, 4];
        assert!(t(0, &[(Op::Shr, 24)], &[(0x45, 0x45)]).holds(&b));
        assert!(t(4, &[], &[(0x0102_0304, 0x0102_0304)]).holds(&b));
        // The last word that fits, and one byte past it.
        assert!(!t(5, &[], &[(0, u32::MAX)]).holds(&b));
        assert!(!t(0, &[], &[(0, u32::MAX)]).holds(&b[..3]));
        // `@` past the end, and an offset that overflows.
        assert!(!t(0, &[(Op::And, 0), (Op::At, 5)], &[(0, u32::MAX)]).holds(&b));
        assert!(t(0, &[(Op::And, 0), (Op::At, 4)], &[(0, u32::MAX)]).holds(&b));
        assert!(!t(0, &[(Op::At, 0)], &[(0, u32::MAX)]).holds(&b));
        assert!(!t(u32::MAX, &[], &[(0, u32::MAX)]).holds(&b));
        // Shifts take their count modulo 32.
        assert!(t(0, &[(Op::Shr, 56)], &[(0x45, 0x45)]).holds(&b));
        assert!(t(0, &[(Op::Shl, 32)], &[(0x4500_0014, 0x4500_0014)]).holds(&b));
    }
}
