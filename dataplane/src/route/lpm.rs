//! FAST PATH (lookups): no allocation, lock, syscall or log.
//!
//! Longest-prefix match over a multibit trie with controlled prefix expansion: a 16-bit root
//! stride, then 8-bit strides (16-8-8 for IPv4, 16 then fourteen 8s for IPv6). Every slot of a
//! table is one `u32`: 0 for no route, `index + 1` for a next hop, or `CHILD | base` for
//! the next-level table at `base`. A lookup reads one slot per level it descends (one for a
//! prefix up to /16, two up to /24, three up to /32; IPv6 /48 takes five).
//!
//! Building inserts prefixes from the shortest to the longest: a prefix fills every slot its
//! range covers at its level, a longer one later overwrites its part, and a new child table
//! starts as copies of the slot it replaces, so it inherits the covering route. Static routes
//! change rarely: a change builds a new table (tens of milliseconds for 100k routes) that the
//! caller swaps in, rather than updating one in place under readers.
//!
//! Memory: the root is 256 KiB; each child table is 1 KiB.

/// Marks a slot that points to a child table.
const CHILD: u32 = 1 << 31;
const ROOT_BITS: u32 = 16;
const STRIDE_BITS: u32 = 8;
const STRIDE_SLOTS: usize = 1 << STRIDE_BITS;

/// Why a table cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    #[error("prefix length {len} is longer than the {width}-bit address")]
    PrefixLength { len: u8, width: u8 },
    #[error("more than {0} next hops or tables")]
    TooLarge(u32),
}

/// A longest-prefix-match table over `width`-bit keys (32 or 128), left-aligned in a `u128`.
#[derive(Clone, Debug)]
pub struct Lpm {
    width: u8,
    slots: Vec<u32>,
}

impl Lpm {
    /// Builds the table from `(prefix, length, next hop)`; the prefix's host bits are ignored.
    /// Duplicates: the last one given wins.
    pub fn build(width: u8, prefixes: &[(u128, u8, u32)]) -> Result<Lpm, LpmError> {
        let mut order: Vec<usize> = (0..prefixes.len()).collect();
        order.sort_by_key(|&i| prefixes[i].1);
        let mut t = Lpm {
            width,
            slots: vec![0; 1 << ROOT_BITS],
        };
        for i in order {
            let (key, len, hop) = prefixes[i];
            if len > width {
                return Err(LpmError::PrefixLength { len, width });
            }
            if hop >= CHILD - 1 {
                return Err(LpmError::TooLarge(CHILD - 1));
            }
            t.insert(left_align(key, width), u32::from(len), hop + 1)?;
        }
        Ok(t)
    }

    fn insert(&mut self, key: u128, len: u32, leaf: u32) -> Result<(), LpmError> {
        let mut base = 0usize;
        let mut consumed = 0u32;
        let mut stride = ROOT_BITS;
        loop {
            let idx = bits(key, consumed, stride) as usize;
            if len <= consumed + stride {
                let span = 1usize << (consumed + stride - len);
                let start = idx & !(span - 1);
                // Every earlier prefix was at most as long as this one, so none made a child
                // table below this level: the range holds leaves only.
                self.slots[base + start..base + start + span].fill(leaf);
                return Ok(());
            }
            let slot = self.slots[base + idx];
            base = if slot & CHILD != 0 {
                (slot & !CHILD) as usize
            } else {
                let child = self.slots.len();
                if child as u64 + STRIDE_SLOTS as u64 >= u64::from(CHILD) {
                    return Err(LpmError::TooLarge(CHILD - 1));
                }
                self.slots.extend(std::iter::repeat_n(slot, STRIDE_SLOTS));
                self.slots[base + idx] = CHILD | child as u32;
                child
            };
            consumed += stride;
            stride = STRIDE_BITS;
        }
    }

    /// The next hop of the longest prefix covering `key` (right-aligned: an IPv4 address is
    /// `u32 as u128`).
    #[inline]
    pub fn lookup(&self, key: u128) -> Option<u32> {
        let key = left_align(key, self.width);
        let mut slot = self.slots[bits(key, 0, ROOT_BITS) as usize];
        let mut consumed = ROOT_BITS;
        while slot & CHILD != 0 && consumed < 128 {
            let base = (slot & !CHILD) as usize;
            let i = bits(key, consumed, STRIDE_BITS) as usize;
            slot = match self.slots.get(base + i) {
                Some(&s) => s,
                None => return None,
            };
            consumed += STRIDE_BITS;
        }
        slot.checked_sub(1).filter(|_| slot & CHILD == 0)
    }

    /// [`Lpm::lookup`] in a 32-bit (IPv4) table: at most three reads, no 128-bit shifts.
    #[inline]
    pub fn lookup_v4(&self, key: u32) -> Option<u32> {
        debug_assert_eq!(self.width, 32);
        let mut slot = *self.slots.get((key >> 16) as usize)?;
        if slot & CHILD != 0 {
            let i = (slot & !CHILD) as usize + ((key >> 8) & 0xff) as usize;
            slot = *self.slots.get(i)?;
            if slot & CHILD != 0 {
                slot = *self
                    .slots
                    .get((slot & !CHILD) as usize + (key & 0xff) as usize)?;
            }
        }
        slot.checked_sub(1).filter(|_| slot & CHILD == 0)
    }

    /// Bytes of table memory.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * 4
    }
}

#[inline(always)]
fn left_align(key: u128, width: u8) -> u128 {
    if width >= 128 {
        key
    } else {
        key << (128 - u32::from(width))
    }
}

/// `n` bits of `key` starting `from` bits below the top.
#[inline(always)]
fn bits(key: u128, from: u32, n: u32) -> u32 {
    ((key << from) >> (128 - n)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(width: u8, prefixes: &[(u128, u8, u32)], key: u128) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for &(p, len, hop) in prefixes {
            let mask = if len == 0 {
                0
            } else {
                (!0u128 >> (128 - u32::from(width))) & !((1u128 << (width - len)) - 1)
            };
            if key & mask == p & mask && best.is_none_or(|(l, _)| len >= l) {
                best = Some((len, hop));
            }
        }
        best.map(|(_, h)| h)
    }

    #[test]
    fn v4_basics() {
        let ip = |a: [u8; 4]| u128::from(u32::from_be_bytes(a));
        let t = Lpm::build(
            32,
            &[
                (0, 0, 0),
                (ip([10, 0, 0, 0]), 8, 1),
                (ip([10, 1, 0, 0]), 16, 2),
                (ip([10, 1, 2, 0]), 24, 3),
                (ip([10, 1, 2, 3]), 32, 4),
                (ip([10, 1, 2, 128]), 25, 5),
                (ip([10, 1, 2, 129]), 31, 6),
            ],
        )
        .unwrap();
        assert_eq!(t.lookup(ip([192, 0, 2, 1])), Some(0));
        assert_eq!(t.lookup(ip([10, 9, 9, 9])), Some(1));
        assert_eq!(t.lookup(ip([10, 1, 9, 9])), Some(2));
        assert_eq!(t.lookup(ip([10, 1, 2, 4])), Some(3));
        assert_eq!(t.lookup(ip([10, 1, 2, 3])), Some(4));
        assert_eq!(t.lookup(ip([10, 1, 2, 200])), Some(5));
        assert_eq!(t.lookup(ip([10, 1, 2, 129])), Some(6));
        assert_eq!(t.lookup(ip([10, 1, 2, 128])), Some(6));
        let empty = Lpm::build(32, &[(ip([10, 0, 0, 0]), 8, 0)]).unwrap();
        assert_eq!(empty.lookup(ip([11, 0, 0, 0])), None);
        assert_eq!(
            Lpm::build(32, &[(0, 33, 0)]).unwrap_err(),
            LpmError::PrefixLength { len: 33, width: 32 }
        );
    }

    #[test]
    fn v6_deep_prefixes() {
        let a = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        let t = Lpm::build(
            128,
            &[
                (a("2001:db8::"), 32, 0),
                (a("2001:db8:1::"), 48, 1),
                (a("2001:db8:1:2::"), 64, 2),
                (a("2001:db8:1:2::7"), 128, 3),
                (a("::"), 0, 4),
            ],
        )
        .unwrap();
        assert_eq!(t.lookup(a("2001:db8:1:2::7")), Some(3));
        assert_eq!(t.lookup(a("2001:db8:1:2::8")), Some(2));
        assert_eq!(t.lookup(a("2001:db8:1:3::8")), Some(1));
        assert_eq!(t.lookup(a("2001:db8:2::")), Some(0));
        assert_eq!(t.lookup(a("fe80::1")), Some(4));
    }

    fn arb_prefixes(width: u8) -> impl Strategy<Value = Vec<(u128, u8, u32)>> {
        proptest::collection::vec((any::<u128>(), 0..=width, 0u32..1000), 0..60).prop_map(
            move |v| {
                v.into_iter()
                    .map(|(k, len, h)| {
                        // Four clusters (top byte 0..3) so prefixes nest and overlap.
                        let w = u32::from(width);
                        let top = u128::from((k >> 120) as u8 % 4);
                        let low = k & ((1u128 << (w - 8)) - 1);
                        ((top << (w - 8)) | low, len, h)
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #[test]
        fn matches_linear_reference_v4(prefixes in arb_prefixes(32), keys in proptest::collection::vec(any::<u32>(), 1..50)) {
            // Unique (prefix, len) so "last wins" and the reference agree.
            let mut seen = std::collections::HashSet::new();
            let prefixes: Vec<_> = prefixes.into_iter().filter(|&(k, l, _)| {
                let m = if l == 0 { 0 } else { u128::from(u32::MAX << (32 - l)) };
                seen.insert((k & m, l))
            }).collect();
            let t = Lpm::build(32, &prefixes).unwrap();
                for k in keys.iter().map(|&k| u128::from(k) % (4 << 24)).chain(prefixes.iter().map(|p| p.0)) {
                prop_assert_eq!(t.lookup(k), reference(32, &prefixes, k), "key {:x}", k);
                prop_assert_eq!(t.lookup_v4(k as u32), t.lookup(k), "key {:x}", k);
            }
        }

        #[test]
        fn matches_linear_reference_v6(prefixes in arb_prefixes(128), keys in proptest::collection::vec(any::<u128>(), 1..50)) {
            let mut seen = std::collections::HashSet::new();
            let prefixes: Vec<_> = prefixes.into_iter().filter(|&(k, l, _)| {
                let m = if l == 0 { 0 } else { u128::MAX << (128 - u32::from(l)) };
                seen.insert((k & m, l))
            }).collect();
            let t = Lpm::build(128, &prefixes).unwrap();
            for k in keys.into_iter().map(|k| k % (4 << 120)).chain(prefixes.iter().map(|p| p.0 ^ 1)) {
                prop_assert_eq!(t.lookup(k), reference(128, &prefixes, k));
            }
        }
    }
}
