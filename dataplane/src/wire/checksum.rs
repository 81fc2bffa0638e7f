//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The internet checksum (RFC 1071), the IPv4/IPv6 pseudo-headers (RFC 9293 §3.1,
//! RFC 8200 §8.1), and incremental updates (RFC 1624 eqn. 3) for NAT and TTL rewrites.
//!
//! Vocabulary: a *sum* is the folded one's-complement sum of some bytes (not complemented); a
//! *checksum* is the complement of the sum of everything it covers, as stored on the wire.
//! A buffer whose checksum field is correct sums to `0xffff`.
//!
//! Invariant: the `update_*` helpers give exactly what a full recompute gives whenever the
//! covered bytes never sum to zero (true for any real IPv4 header or L4 pseudo-header, which
//! carry a non-zero version or protocol). UDP's "0 means no checksum" rule is the caller's:
//! leave a zero UDP checksum alone, and store a computed 0 as `0xffff` (RFC 768).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Fold a wide one's-complement accumulator into 16 bits: four fixed steps, enough for any
/// 64-bit value (each keeps the value modulo 0xffff, and zero only for zero; after the fourth
/// it is at most 0xffff, and a step changes nothing below 0x10000).
#[inline]
pub const fn fold(acc: u64) -> u16 {
    let acc = (acc >> 32) + (acc & 0xffff_ffff); // < 2^33
    let acc = (acc >> 16) + (acc & 0xffff); // <= 0x2fffe
    let acc = (acc >> 16) + (acc & 0xffff); // <= 0x10001
    let acc = (acc >> 16) + (acc & 0xffff); // <= 0xffff
    acc as u16
}

/// Unfolded one's-complement sum of `data`, as big-endian 16-bit words (an odd last byte is
/// padded with zero on the right). Partial sums of even-length pieces add up.
#[inline]
pub fn accumulate(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// One's-complement sum of `data` as little-endian 16-bit words (an odd last byte is the low
/// byte of a word), added to `acc`: eight bytes a load, sixteen a step (a TCP header with a
/// short payload is one or two steps), each 64-bit word added with end-around carry (one's-
/// complement arithmetic modulo 2^64 - 1, of which 0xffff divides, so the fold keeps the
/// 16-bit sum, and the result is zero only when every word is), and a last partial word taken
/// from one load of the buffer's last eight bytes, shifted. Once folded it is the byte swap of
/// [`accumulate`]'s (RFC 1071 §2(B): the sum does not depend on the byte order, up to a swap
/// of the result), so a check against `0xffff`, its own swap, needs no swap at all.
#[inline(always)]
pub fn accumulate_le(acc: u64, data: &[u8]) -> u64 {
    let n = data.len();
    if n < 8 {
        return add_carry(acc, u64::from(fold(accumulate(data)).swap_bytes()));
    }
    let le = |w: &[u8]| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    let mut acc = acc;
    let mut steps = data.chunks_exact(16);
    for w in &mut steps {
        acc = add_carry(add_carry(acc, le(&w[..8])), le(&w[8..]));
    }
    let tail = steps.remainder();
    if tail.len() >= 8 {
        acc = add_carry(acc, le(&tail[..8]));
    }
    let rest = tail.len() % 8;
    if rest != 0 {
        // The last `rest` bytes are the top of the last eight: shifted down, they sit where
        // they belong in a little-endian word, zero-padded.
        acc = add_carry(acc, le(&data[n - 8..]) >> (8 * (8 - rest)));
    }
    acc
}

/// `a + b` with end-around carry.
#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + u64::from(c)
}

/// Folded sum of `data`.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(accumulate(data))
}

/// Folded sum of a 20-byte header (an IPv4 header without options): the same value as
/// [`sum`], in a fixed handful of instructions. The words are added in native byte order, two
/// 32-bit halves of each 64-bit load at a time; a one's-complement sum of byte-swapped words
/// is the byte-swapped sum (RFC 1071 §2(B)), so one swap at the end gives the big-endian sum.
#[inline(always)]
pub fn sum_20(h: &[u8; 20]) -> u16 {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7, c0, c1, c2, c3] = *h;
    let a = u64::from_ne_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
    let b = u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
    let c = u32::from_ne_bytes([c0, c1, c2, c3]);
    // At most 5 * (2^32 - 1): no overflow.
    let mut acc = (a & 0xffff_ffff) + (a >> 32) + (b & 0xffff_ffff) + (b >> 32) + u64::from(c);
    acc = (acc & 0xffff_ffff) + (acc >> 32); // <= 2^32 + 3
    acc = (acc & 0xffff) + (acc >> 16); // <= 0x1_ffff
    acc = (acc & 0xffff) + (acc >> 16); // <= 0x1_0000
    acc = (acc & 0xffff) + (acc >> 16); // <= 0xffff
    u16::from_be(acc as u16)
}

/// Whether a 20-byte header's checksum verifies: exactly `sum_20(h) == 0xffff`, in fewer
/// instructions, for the parser's per-packet check. The three native-order loads are added
/// with end-around carry in 64 bits, which keeps their value modulo 0xffff (2^64 and 2^16 are
/// both 1 modulo 0xffff, and a byte swap multiplies by 2^8, which is invertible). A folded sum
/// is 0xffff exactly when that value is a non-zero multiple of 0xffff; the accumulator is
/// zero only for an all-zero header. Divisibility by the odd 0xffff is one multiply by its
/// inverse modulo 2^64 and a compare (a multiple maps to at most `u64::MAX / 0xffff`, every
/// other value above it).
#[inline(always)]
pub fn verify_20(h: &[u8; 20]) -> bool {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7, c0, c1, c2, c3] = *h;
    verify_20_words(
        u64::from_ne_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        u32::from_ne_bytes([c0, c1, c2, c3]),
    )
}

/// [`verify_20`] over a header already loaded as bytes 0..8, 8..16 and 16..20, each read in
/// the same byte order (either: the byte swap only multiplies the sum by 2^8), for a parser
/// that reads the header's fields out of the same loads.
#[inline(always)]
pub fn verify_20_words(a: u64, b: u64, c: u32) -> bool {
    let c = u64::from(c);
    // After a carry out the sum is at most 2^64 - 2, so adding the carry back cannot wrap.
    let (s, carry) = a.overflowing_add(b);
    let s = s + u64::from(carry);
    let (s, carry) = s.overflowing_add(c);
    folds_to_ones(s + u64::from(carry))
}

/// Whether a one's-complement sum kept in 64 bits (with end-around carry, or a plain sum that
/// never carried) folds to 0xffff, i.e. covers a correct checksum: [`fold`] keeps the value
/// modulo 0xffff (which divides 2^64 - 1) and gives 0 only for 0, so the folded sum is 0xffff
/// exactly when the value is a non-zero multiple of 0xffff. Divisibility by the odd 0xffff is
/// one multiply by its inverse modulo 2^64 and a compare (a multiple maps to at most
/// `u64::MAX / 0xffff`, every other value above it): three instructions where the fold takes
/// a dozen.
#[inline(always)]
pub fn folds_to_ones(acc: u64) -> bool {
    (acc != 0) & (acc.wrapping_mul(INV_FFFF) <= u64::MAX / 0xffff)
}

/// The inverse of 0xffff modulo 2^64.
const INV_FFFF: u64 = 0xfffe_fffe_fffe_ffff;
const _: () = assert!(INV_FFFF.wrapping_mul(0xffff) == 1);

/// One's-complement addition of already folded sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The checksum to store for `data` alone (e.g. an IPv4 header, ICMPv4): `!sum(data)`.
/// The checksum field inside `data` must be zero when computing.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// The address pair an L4 checksum's pseudo-header covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PseudoHeader {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl PseudoHeader {
    /// Folded sum of the pseudo-header for `proto` and an upper-layer length of `len` bytes.
    #[inline]
    pub fn sum(&self, proto: u8, len: u32) -> u16 {
        match self {
            PseudoHeader::V4 { src, dst } => pseudo_header_v4(src, dst, proto, len),
            PseudoHeader::V6 { src, dst } => pseudo_header_v6(src, dst, proto, len),
        }
    }

    /// Whether this is an IPv6 pseudo-header (UDP checksum mandatory, RFC 8200 §8.1).
    #[inline]
    pub const fn is_v6(&self) -> bool {
        matches!(self, PseudoHeader::V6 { .. })
    }

    /// Checksum to store for an upper-layer message `data` (its checksum field zeroed).
    #[inline]
    pub fn checksum(&self, proto: u8, data: &[u8]) -> u16 {
        !combine(&[self.sum(proto, data.len() as u32), sum(data)])
    }

    /// Whether `data` (checksum field included) verifies against this pseudo-header.
    #[inline]
    pub fn verify(&self, proto: u8, data: &[u8]) -> bool {
        combine(&[self.sum(proto, data.len() as u32), sum(data)]) == 0xffff
    }
}

/// Sum of the IPv4 pseudo-header (RFC 9293 §3.1): src, dst, zero, protocol, length.
#[inline]
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, proto: u8, len: u32) -> u16 {
    let acc = accumulate(&src.octets())
        + accumulate(&dst.octets())
        + u64::from(proto)
        + u64::from(len >> 16)
        + u64::from(len & 0xffff);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): src, dst, 32-bit length, next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, len: u32) -> u16 {
    let acc = accumulate(&src.octets())
        + accumulate(&dst.octets())
        + u64::from(proto)
        + u64::from(len >> 16)
        + u64::from(len & 0xffff);
    fold(acc)
}

/// New checksum after one 16-bit word changes from `old` to `new` (RFC 1624 eqn. 3:
/// `HC' = ~(~HC + ~m + m')`).
#[inline]
pub const fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(!checksum as u64 + !old as u64 + new as u64)
}

/// New checksum after an aligned 32-bit field changes from `old` to `new`.
#[inline]
pub const fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let acc = !checksum as u64
        + !(old >> 16) as u16 as u64
        + !(old as u16) as u64
        + (new >> 16) as u64
        + (new as u16) as u64;
    !fold(acc)
}

/// New checksum after an aligned address (4 or 16 bytes) changes from `old` to `new`.
#[inline]
pub fn update_addr<const N: usize>(checksum: u16, old: &[u8; N], new: &[u8; N]) -> u16 {
    let mut acc = u64::from(!checksum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let o = u16::from_be_bytes([o[0], *o.get(1).unwrap_or(&0)]);
        let n = u16::from_be_bytes([n[0], *n.get(1).unwrap_or(&0)]);
        acc += u64::from(!o) + u64::from(n);
    }
    !fold(acc)
}

/// The running difference of several 16-bit-aligned field changes, applied to a checksum at
/// once (RFC 1624 eqn. 3 summed over the words): `HC' = ~(~HC + sum(~m) + sum(m'))`.
///
/// The same delta applies to every checksum that covers the changed words, so a NAT rewrite
/// collects the address changes once for the IPv4 header and the L4 pseudo-header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    /// No change.
    pub const ZERO: Delta = Delta(0);

    /// One word changes from `old` to `new`.
    #[inline]
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// An even-length, 16-bit-aligned field changes from `old` to `new` (same length; an odd
    /// last byte counts as the high byte of a word, as in [`accumulate`]).
    #[inline]
    pub fn bytes(&mut self, old: &[u8], new: &[u8]) {
        for (o, n) in old.chunks(2).zip(new.chunks(2)) {
            let o = u16::from_be_bytes([o[0], o.get(1).copied().unwrap_or(0)]);
            let n = u16::from_be_bytes([n[0], n.get(1).copied().unwrap_or(0)]);
            self.word(o, n);
        }
    }

    /// A delta from an unfolded sum of `!old + new` word pairs.
    #[inline]
    pub const fn from_sum(sum: u64) -> Delta {
        Delta(sum)
    }

    /// Both deltas.
    #[inline]
    pub const fn plus(self, o: Delta) -> Delta {
        Delta(self.0 + o.0)
    }

    /// The checksum after the changes.
    #[inline]
    pub const fn apply(self, checksum: u16) -> u16 {
        !fold(!checksum as u64 + self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The little-endian sum is the byte swap of the big-endian one, odd lengths included.
        #[test]
        fn little_endian_sum_is_the_swap(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(fold(accumulate_le(0, &data)), sum(&data).swap_bytes());
            // From any start: the start's folded sum comes in.
            let start = u64::from(data.len() as u32) * 0x1_0001_0001;
            prop_assert_eq!(
                fold(accumulate_le(start, &data)),
                combine(&[fold(start), sum(&data).swap_bytes()])
            );
        }
    }

    #[test]
    fn fold_is_the_folding_loop() {
        fn by_loop(mut acc: u64) -> u16 {
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        }
        for x in [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_ffff,
            0x2_fffe,
            u64::MAX,
            u64::MAX - 1,
            1 << 48,
        ] {
            assert_eq!(fold(x), by_loop(x), "{x:#x}");
        }
    }

    proptest! {
        #[test]
        fn fold_matches_the_loop_everywhere(x in any::<u64>()) {
            let mut acc = x;
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            prop_assert_eq!(fold(x), acc as u16);
        }

        #[test]
        fn folds_to_ones_is_the_fold(x in any::<u64>(), k in any::<u64>()) {
            prop_assert_eq!(folds_to_ones(x), fold(x) == 0xffff);
            // Multiples of 0xffff, which random values almost never are.
            let m = (k % (u64::MAX / 0xffff + 1)) * 0xffff;
            prop_assert_eq!(folds_to_ones(m), fold(m) == 0xffff);
            prop_assert_eq!(folds_to_ones(m.wrapping_add(1)), fold(m.wrapping_add(1)) == 0xffff);
        }
    }

    // RFC 1071 §3 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
        assert_eq!(sum(&data[..7]), fold(0x0001 + 0xf203 + 0xf4f5 + 0xf600));
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example header; stored checksum 0xb861.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
    }

    #[test]
    fn ttl_decrement() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        let c = update_u16(0xb861, old, new);
        hdr[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(c, checksum(&hdr));
    }

    fn ipv4_like_header() -> impl Strategy<Value = [u8; 20]> {
        proptest::array::uniform20(any::<u8>()).prop_map(|mut h| {
            h[0] = 0x45;
            h[10] = 0;
            h[11] = 0;
            h
        })
    }

    proptest! {
        #[test]
        fn update_u16_matches_recompute(mut h in ipv4_like_header(), word in 1usize..10, new in any::<u16>()) {
            prop_assume!(word != 5);
            let c = checksum(&h);
            let old = u16::from_be_bytes([h[2 * word], h[2 * word + 1]]);
            h[2 * word..2 * word + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update_u16(c, old, new), checksum(&h));
        }

        #[test]
        fn update_u32_and_addr_match_recompute(mut h in ipv4_like_header(), new in any::<[u8; 4]>(), dst in any::<bool>()) {
            let c = checksum(&h);
            let at = if dst { 16 } else { 12 };
            let old: [u8; 4] = h[at..at + 4].try_into().unwrap();
            h[at..at + 4].copy_from_slice(&new);
            let full = checksum(&h);
            prop_assert_eq!(update_u32(c, u32::from_be_bytes(old), u32::from_be_bytes(new)), full);
            prop_assert_eq!(update_addr(c, &old, &new), full);
        }

        #[test]
        fn update_v6_addr_in_l4_checksum(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new_src in any::<[u8; 16]>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let ph = PseudoHeader::V6 { src: src.into(), dst: dst.into() };
            let c = ph.checksum(17, &payload);
            let ph2 = PseudoHeader::V6 { src: new_src.into(), dst: dst.into() };
            prop_assert_eq!(update_addr(c, &src, &new_src), ph2.checksum(17, &payload));
        }

        #[test]
        fn delta_matches_recompute(mut h in ipv4_like_header(), changes in proptest::collection::vec((1usize..10, any::<u16>()), 0..6)) {
            let c = checksum(&h);
            let mut d = Delta::ZERO;
            for (word, new) in changes {
                if word == 5 { continue; }
                let at = 2 * word;
                let old = h[at..at + 2].to_vec();
                h[at..at + 2].copy_from_slice(&new.to_be_bytes());
                d.bytes(&old, &new.to_be_bytes());
            }
            prop_assert_eq!(d.apply(c), checksum(&h));
        }

        #[test]
        fn sum_20_matches_sum(h in proptest::array::uniform20(any::<u8>())) {
            prop_assert_eq!(sum_20(&h), sum(&h));
        }

        #[test]
        fn verify_20_matches_sum_20(h in proptest::array::uniform20(any::<u8>()), at in 0usize..20, x in any::<u8>()) {
            prop_assert_eq!(verify_20(&h), sum_20(&h) == 0xffff);
            // The same header with a good checksum, then damaged in one byte.
            let mut g = h;
            g[10] = 0;
            g[11] = 0;
            let c = !sum(&g);
            g[10..12].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verify_20(&g));
            prop_assert_eq!(sum_20(&g), 0xffff);
            g[at] ^= x;
            prop_assert_eq!(verify_20(&g), sum_20(&g) == 0xffff);
        }

        #[test]
        fn divisibility_by_inverse(x in any::<u64>(), k in 0u64..=u64::MAX / 0xffff) {
            prop_assert_eq!(x.wrapping_mul(INV_FFFF) <= u64::MAX / 0xffff, x % 0xffff == 0);
            prop_assert!((k * 0xffff).wrapping_mul(INV_FFFF) <= u64::MAX / 0xffff);
        }

        #[test]
        fn verify_20_edge_words(fill in prop_oneof![Just(0u8), Just(0xff), Just(0x80), Just(0x01)], at in 0usize..20, x in any::<u8>()) {
            let mut h = [fill; 20];
            h[at] = x;
            prop_assert_eq!(verify_20(&h), sum_20(&h) == 0xffff);
        }

        #[test]
        fn sum_20_edge_words(fill in prop_oneof![Just(0u8), Just(0xff), Just(0x80), Just(0x01)], at in 0usize..20, x in any::<u8>()) {
            let mut h = [fill; 20];
            h[at] = x;
            prop_assert_eq!(sum_20(&h), sum(&h));
        }

        #[test]
        fn pieces_add_up(a in proptest::collection::vec(any::<u8>(), 0..40), b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let a_even = &a[..a.len() & !1];
            let mut all = a_even.to_vec();
            all.extend_from_slice(&b);
            prop_assert_eq!(combine(&[sum(a_even), sum(&b)]) % 0xffff, sum(&all) % 0xffff);
        }

        #[test]
        fn verify_after_fill(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            mut data in proptest::collection::vec(any::<u8>(), 8..64),
        ) {
            let ph = PseudoHeader::V4 { src: src.into(), dst: dst.into() };
            data[6] = 0;
            data[7] = 0;
            let c = ph.checksum(17, &data);
            data[6..8].copy_from_slice(&c.to_be_bytes());
            prop_assert!(ph.verify(17, &data));
        }
    }
}
