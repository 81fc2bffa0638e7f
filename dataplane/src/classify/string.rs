//! `-m string` (xt_string): the kernel's textsearch over the packet from its network header
//! ([`super::payload`]), between `--from` and `--to`, with `bm` (lib/ts_bm.c) or `kmp`
//! (lib/ts_kmp.c) as the kernel runs them.
//!
//! `skb_find_text` reads the skb block by block from `from` (blocks starting at `to` or after
//! are not read, the others are read whole) and a match counts when it ends by `to`. `kmp`
//! carries its state from one block to the next, so it finds a pattern across blocks; `bm`
//! searches each block alone (a pattern spread over two fragments of a reassembled datagram
//! is not found). Both are the kernel's own algorithms here, tables and all, so they give the
//! kernel's answer where its `bm` tables and case folding have quirks (`--icase` folds with
//! the kernel's Latin-1 `toupper`).

use super::payload::View;
use super::Wire;

/// The search algorithm (`--algo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algo {
    Bm,
    Kmp,
}

/// One `-m string`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StringMatch {
    pub algo: Algo,
    /// As given (for display); the search uses `folded`.
    pub pattern: Vec<u8>,
    /// The pattern as searched: with `--icase`, through the kernel's `toupper`.
    folded: Vec<u8>,
    pub from: u16,
    pub to: u16,
    pub icase: bool,
    pub invert: bool,
    /// `bm`: the bad-character shifts (256) then the good-suffix shifts (one per pattern
    /// byte); `kmp`: the prefix table.
    table: Vec<u32>,
}

/// The kernel's `islower` (lib/ctype.c's table: ASCII and Latin-1).
fn is_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || (0xdf..=0xf6).contains(&c) || c >= 0xf8
}

/// The kernel's `isupper`.
fn is_upper(c: u8) -> bool {
    c.is_ascii_uppercase() || (0xc0..=0xd6).contains(&c) || (0xd8..=0xde).contains(&c)
}

/// The kernel's `toupper`: a lower-case letter less 0x20 (0xdf, `ß`, becomes 0xbf).
pub fn to_upper(c: u8) -> u8 {
    if is_lower(c) {
        c - 0x20
    } else {
        c
    }
}

/// The kernel's `tolower`.
fn to_lower(c: u8) -> u8 {
    if is_upper(c) {
        c + 0x20
    } else {
        c
    }
}

impl StringMatch {
    /// A search for `pattern` (1 to 128 bytes: the parser refuses others).
    pub fn new(
        algo: Algo,
        pattern: &[u8],
        from: u16,
        to: u16,
        icase: bool,
        invert: bool,
    ) -> StringMatch {
        let folded: Vec<u8> = if icase {
            pattern.iter().map(|&c| to_upper(c)).collect()
        } else {
            pattern.to_vec()
        };
        let table = match algo {
            Algo::Bm => bm_tables(&folded, icase),
            Algo::Kmp => kmp_table(pattern, icase),
        };
        StringMatch {
            algo,
            pattern: pattern.to_vec(),
            folded,
            from,
            to,
            icase,
            invert,
            table,
        }
    }

    /// xt_string's `string_mt`.
    pub fn holds(&self, w: &Wire<'_>) -> bool {
        super::payload::with_view(w, |v| self.found(v)) != self.invert
    }

    /// `skb_find_text(skb, from, to) != UINT_MAX` over `v`.
    pub fn found(&self, v: View<'_>) -> bool {
        let (from, to) = (usize::from(self.from), usize::from(self.to));
        let at = match self.algo {
            Algo::Bm => v
                .blocks(from, to)
                .find_map(|(off, text)| self.bm_find(text).map(|i| off + i)),
            Algo::Kmp => self.kmp_find(v.blocks(from, to)),
        };
        // `ret + patlen <= to - from` (the kernel refuses from > to).
        at.is_some_and(|a| a + self.folded.len() <= to.saturating_sub(from))
    }

    /// ts_bm's `bm_find` over one block: the offset of the first match it finds.
    fn bm_find(&self, text: &[u8]) -> Option<usize> {
        let pat = &self.folded;
        let n = pat.len();
        let (bad, good) = self.table.split_at(256);
        let mut shift = n - 1;
        while shift < text.len() {
            let mut i = 0;
            while i < n {
                let mut t = text[shift - i];
                if self.icase {
                    t = to_upper(t);
                }
                if t != pat[n - 1 - i] {
                    break;
                }
                i += 1;
            }
            if i == n {
                return Some(shift - (n - 1));
            }
            let bs = bad[usize::from(text[shift - i])] as usize;
            shift = (shift - i + bs).max(shift + good[i] as usize);
        }
        None
    }

    /// ts_kmp's `kmp_find` over the blocks in order (its state carried across them).
    fn kmp_find<'b>(&self, blocks: impl Iterator<Item = (usize, &'b [u8])>) -> Option<usize> {
        let pat = &self.folded;
        let prefix = &self.table;
        let mut q = 0usize;
        for (off, text) in blocks {
            for (i, &c) in text.iter().enumerate() {
                let c = if self.icase { to_upper(c) } else { c };
                while q > 0 && pat[q] != c {
                    q = prefix[q - 1] as usize;
                }
                if pat[q] == c {
                    q += 1;
                }
                if q == pat.len() {
                    return Some(off + i + 1 - q);
                }
            }
        }
        None
    }
}

/// ts_bm's `compute_prefix_tbl` over the (folded) pattern.
fn bm_tables(pat: &[u8], icase: bool) -> Vec<u32> {
    let n = pat.len();
    let mut t = vec![n as u32; 256 + n];
    for (i, &c) in pat.iter().enumerate().take(n.saturating_sub(1)) {
        let s = (n - 1 - i) as u32;
        t[usize::from(c)] = s;
        if icase {
            t[usize::from(to_lower(c))] = s;
        }
    }
    let good = &mut t[256..];
    good[0] = 1;
    let mut g = 1usize;
    let mut i = n as isize - 1;
    while i > 0 {
        let mut j = i - 1;
        while j >= 1 - g as isize {
            if subpattern(pat, i, j, g as isize) {
                good[g] = (n as isize - j - g as isize) as u32;
                break;
            }
            j -= 1;
        }
        g += 1;
        i -= 1;
    }
    t
}

/// ts_bm's `subpattern`: whether the `g` bytes ending at `i + g - 1` recur ending at
/// `j + g - 1` (or run off the pattern's start) with a different byte before them.
fn subpattern(p: &[u8], i: isize, j: isize, mut g: isize) -> bool {
    let (mut x, mut y) = (i + g - 1, j + g - 1);
    loop {
        let eq = p[x as usize] == p[y as usize];
        x -= 1;
        y -= 1;
        if !eq {
            return false;
        }
        if y < 0 {
            return true;
        }
        g -= 1;
        if g == 0 {
            return p[(i - 1) as usize] != p[(j - 1) as usize];
        }
    }
}

/// ts_kmp's `compute_prefix_tbl` (over the pattern as given, folding as it compares).
fn kmp_table(pat: &[u8], icase: bool) -> Vec<u32> {
    let f = |c: u8| if icase { to_upper(c) } else { c };
    let mut t = vec![0u32; pat.len()];
    let mut k = 0usize;
    for q in 1..pat.len() {
        while k > 0 && f(pat[k]) != f(pat[q]) {
            k = t[k - 1] as usize;
        }
        if f(pat[k]) == f(pat[q]) {
            k += 1;
        }
        t[q] = k as u32;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> View<'_> {
        View {
            bytes,
            ends: &[u32::MAX],
        }
    }

    fn naive(text: &[u8], pat: &[u8], icase: bool) -> bool {
        let f = |c: u8| if icase { to_upper(c) } else { c };
        text.windows(pat.len())
            .any(|w| w.iter().zip(pat).all(|(&a, &b)| f(a) == f(b)))
    }

    #[test]
    fn both_algorithms_find_what_a_plain_search_finds_in_one_block() {
        // Small alphabets make repeats, which exercise the good-suffix table.
        let mut seed = 0x1234_5678u32;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for round in 0..20_000 {
            let alpha: &[u8] = if round % 2 == 0 { b"ab" } else { b"abcAB" };
            let plen = 1 + (rnd() % 6) as usize;
            let tlen = (rnd() % 40) as usize;
            let pat: Vec<u8> = (0..plen)
                .map(|_| alpha[(rnd() as usize) % alpha.len()])
                .collect();
            let text: Vec<u8> = (0..tlen)
                .map(|_| alpha[(rnd() as usize) % alpha.len()])
                .collect();
            let icase = round % 3 == 0;
            let want = naive(&text, &pat, icase);
            for algo in [Algo::Bm, Algo::Kmp] {
                let m = StringMatch::new(algo, &pat, 0, 65535, icase, false);
                assert_eq!(
                    m.found(one(&text)),
                    want,
                    "{algo:?} {:?} in {:?} icase {icase}",
                    String::from_utf8_lossy(&pat),
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    #[test]
    fn from_and_to_bound_the_match() {
        let text = b"0123456789GET /x HTTP/1.1";
        for algo in [Algo::Bm, Algo::Kmp] {
            let m = |from, to| StringMatch::new(algo, b"GET", from, to, false, false);
            assert!(m(0, 65535).found(one(text)));
            // The match is at 10..13: `from` up to 10 and `to` from 13 find it.
            assert!(m(10, 13).found(one(text)));
            assert!(!m(11, 65535).found(one(text)));
            assert!(!m(0, 12).found(one(text)));
            assert!(!m(0, 0).found(one(text)));
        }
    }

    #[test]
    fn kmp_finds_across_blocks_and_bm_does_not() {
        let text = b"xxxxHOSTyyyy";
        let split = View {
            bytes: text,
            ends: &[6, 12],
        };
        let kmp = StringMatch::new(Algo::Kmp, b"HOST", 0, 65535, false, false);
        let bm = StringMatch::new(Algo::Bm, b"HOST", 0, 65535, false, false);
        assert!(kmp.found(split));
        assert!(!bm.found(split));
        assert!(bm.found(one(text)));
        // Within the second block bm finds it, at its offset in the whole.
        let later = View {
            bytes: b"xxxxxxHOSTyy",
            ends: &[6, 12],
        };
        assert!(bm.found(later));
        assert!(!StringMatch::new(Algo::Bm, b"HOST", 0, 9, false, false).found(later));
        assert!(StringMatch::new(Algo::Bm, b"HOST", 0, 10, false, false).found(later));
    }

    #[test]
    fn icase_folds_as_the_kernel() {
        let m = StringMatch::new(Algo::Kmp, b"host:", 0, 65535, true, false);
        assert!(m.found(one(b"xHoSt: a")));
        assert!(!m.found(one(b"xHoSt; a")));
        assert_eq!(to_upper(0xe9), 0xc9);
        assert_eq!(to_upper(0xdf), 0xbf);
        assert_eq!(to_upper(0xf7), 0xf7);
        assert_eq!(to_upper(0xff), 0xdf);
        assert!(StringMatch::new(Algo::Kmp, &[0xe9], 0, 65535, true, false).found(one(&[0xc9])));
    }
}
