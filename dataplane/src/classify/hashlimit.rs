//! `-m hashlimit` (xt_hashlimit, revision 3, packet mode): named tables of token buckets, one
//! bucket per key (source and destination address under their prefix lengths, ports, as the
//! table's mode picks), shared by every rule that names the table, by all workers, and kept
//! across reloads.
//!
//! The arithmetic is the kernel's for revisions 2 and 3, in 64 bits: a rate is its average
//! interval in millionths of a second (`avg`), a bucket holds `user2credits(avg * burst)`
//! credits, a packet costs `user2credits(avg)`, and a jiffy refills [`CREDITS_PER_JIFFY`]
//! (`HZ * CREDITS_PER_JIFFY` is 2^37 * 1000 for `HZ` 1000 and 2^39 * 250 for `HZ` 250 alike, so
//! the common kernels agree on every value). Sums wrap where the kernel's wrap.
//!
//! Time is Rampart's packet time in milliseconds, which plays jiffies at `HZ` 1000, as for
//! `-m limit` and `-m recent`.
//!
//! A table is per name and family (Linux's `/proc/net/ipt_hashlimit/NAME` and
//! `ip6t_hashlimit/NAME`). The first rule naming it makes it with that rule's parameters; a
//! later rule naming it, in the same rule set or in a reload, gets the same table with the
//! first one's parameters (mode, masks, rate, burst, bound, expiry), keeping its buckets, as
//! Linux's `htable_find_get` does; only the rule's own `--hashlimit-upto`/`-above` (which of
//! the two) is its own. A table no rule set names any more is forgotten, and a later rule
//! naming it makes a new one.
//!
//! The bound is Linux's `cfg.max` (8 times the bucket count when 0, at least the bucket count),
//! and the table's memory for that many keys is made with it, so no packet allocates. A new key
//! in a full table gets Linux's answer: the packet is dropped ([`Held`]'s `None`, the kernel's
//! `hotdrop`). Idle keys leave at the table's garbage collection, which Linux runs every
//! `--hashlimit-htable-gcinterval` from a timer and Rampart runs on the first packet after each
//! interval: an entry whose `--hashlimit-htable-expire` has passed is removed then, and the key's
//! next packet starts a full bucket.

use super::{PacketMeta, Wire};
use crate::wire::{ip_proto, Family};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Mode bits (`XT_HASHLIMIT_HASH_*`).
pub mod mode {
    pub const DSTIP: u8 = 1 << 0;
    pub const DSTPORT: u8 = 1 << 1;
    pub const SRCIP: u8 = 1 << 2;
    pub const SRCPORT: u8 = 1 << 3;
}

/// `XT_HASHLIMIT_SCALE_v2`: a rate's average interval is in millionths of a second.
pub const SCALE: u64 = 1_000_000;
/// The emulated jiffy: `HZ` = 1000.
const NS_PER_JIFFY: u64 = 1_000_000;
const HZ: u64 = 1000;
/// xt_hashlimit's `CREDITS_PER_JIFFY` (revision 2 and later) at `HZ` 1000: the largest power of
/// two at most `u64::MAX / (HZ * 60 * 60 * 24)`.
pub const CREDITS_PER_JIFFY: u64 = 1 << 37;
/// The bucket count Linux picks when `--hashlimit-htable-size` is 0 on a machine with more
/// than 1 GiB of memory.
pub const DEFAULT_SIZE: u32 = 8192;
/// The most keys a table may hold here: its memory is made when the table is, so a bound larger
/// than this is refused rather than reserved.
pub const MAX_ENTRIES: u32 = 1 << 20;

/// xt_hashlimit's `user2credits` for revisions 2 and 3 (wrapping as the kernel's `u64` does).
pub fn user2credits(user: u64) -> u64 {
    user.wrapping_mul(HZ * CREDITS_PER_JIFFY / SCALE)
}

/// `(cost, cap)` for `avg` (millionths of a second per packet) and `burst`, or `None` where the
/// kernel refuses the rule (`ERANGE`: a zero burst, or `avg * burst` overflowing its credits).
pub fn credits(avg: u64, burst: u64) -> Option<(u64, u64)> {
    let cap = user2credits(avg.wrapping_mul(burst));
    let cost = user2credits(avg);
    if burst == 0 || cap < cost {
        return None;
    }
    Some((cost, cap))
}

/// A table's parameters, as the rule that made it gave them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// [`mode`] bits.
    pub mode: u8,
    /// Average interval between packets, in millionths of a second.
    pub avg: u64,
    pub burst: u64,
    /// `--hashlimit-htable-size` (0: the default).
    pub size: u32,
    /// `--hashlimit-htable-max` (0: 8 times the size).
    pub max: u32,
    /// Milliseconds.
    pub gc_interval: u32,
    /// Milliseconds.
    pub expire: u32,
    /// Prefix lengths.
    pub srcmask: u8,
    pub dstmask: u8,
}

impl Config {
    /// The most keys the table holds: Linux's `htable_create` (`max` 0 is 8 times the bucket
    /// count, and a `max` below the bucket count is raised to it).
    pub fn bound(&self) -> u64 {
        let size = if self.size == 0 {
            DEFAULT_SIZE
        } else {
            self.size
        };
        match self.max {
            0 => 8 * u64::from(size),
            m => u64::from(m.max(size)),
        }
    }
}

/// One `-m hashlimit` match: the table, and whether it is `--hashlimit-above` (which the
/// table's buckets do not know).
#[derive(Clone, Debug)]
pub struct HashLimitMatch {
    pub table: Arc<HashTable>,
    /// `--hashlimit-above` (or `! --hashlimit-upto`).
    pub above: bool,
}

impl PartialEq for HashLimitMatch {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.table, &o.table) && self.above == o.above
    }
}

impl Eq for HashLimitMatch {}

impl std::hash::Hash for HashLimitMatch {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (&*self.table.name, self.table.family, self.above).hash(h);
    }
}

/// A named table.
#[derive(Debug)]
pub struct HashTable {
    pub name: Box<str>,
    pub family: Family,
    /// The parameters of the rule that made it.
    pub cfg: Config,
    /// The packet's cost and the bucket's size, in credits.
    cost: u64,
    cap: u64,
    bound: usize,
    state: Mutex<State>,
}

/// The key: source and destination address (16 bytes each), source and destination port.
type Key = [u8; 36];

#[derive(Debug)]
struct State {
    entries: HashMap<Key, Entry>,
    /// When the next garbage collection runs (`None` until the first packet).
    next_gc: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    expires: u64,
    /// The jiffy of the last refill.
    prev: u64,
    credit: u64,
}

/// `time_after_eq(a, b)` on a wrapping clock.
#[inline]
fn after_eq(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) >= 0
}

/// The prefix `len` of a 32-bit word (Linux's `maskl`).
fn mask_word(w: &mut [u8], len: u32) {
    let m = if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    };
    let v = u32::from_be_bytes([w[0], w[1], w[2], w[3]]) & m;
    w.copy_from_slice(&v.to_be_bytes());
}

/// An address of `len` bytes under prefix length `bits` (Linux's `maskl` and
/// `hashlimit_ipv6_mask`: whole words after the prefix's are zero).
fn mask_addr(a: &mut [u8], bits: u8) {
    let bits = u32::from(bits);
    for (i, w) in a.chunks_mut(4).enumerate() {
        let at = i as u32 * 32;
        mask_word(w, bits.saturating_sub(at).min(32));
    }
}

/// Where a protocol's two ports are in its header (Linux's `proto_ports_offset`), if it has
/// them.
fn ports_at(proto: u8) -> Option<usize> {
    match proto {
        ip_proto::TCP | ip_proto::UDP | 33 | ip_proto::ESP | 132 | 136 => Some(0),
        ip_proto::AH => Some(4),
        _ => None,
    }
}

impl HashTable {
    /// The packet's key in this table (`hashlimit_init_dst`), or `None` where the kernel drops
    /// the packet (its ports are not there to read).
    fn key(&self, p: &PacketMeta, w: &Wire<'_>) -> Option<Key> {
        let l3 = usize::from(w.l3);
        let m = self.cfg.mode;
        let (src_at, dst_at, len) = match self.family {
            Family::V4 => (l3 + 12, l3 + 16, 4),
            Family::V6 => (l3 + 8, l3 + 24, 16),
        };
        let mut k = [0u8; 36];
        if m & mode::SRCIP != 0 {
            k[..len].copy_from_slice(w.frame.get(src_at..src_at + len)?);
            mask_addr(&mut k[..len], self.cfg.srcmask);
        }
        if m & mode::DSTIP != 0 {
            k[16..16 + len].copy_from_slice(w.frame.get(dst_at..dst_at + len)?);
            mask_addr(&mut k[16..16 + len], self.cfg.dstmask);
        }
        if m & (mode::SRCPORT | mode::DSTPORT) != 0 {
            if let Some(off) = ports_at(p.key.proto) {
                if w.l4 == 0 {
                    return None;
                }
                let at = usize::from(w.l4) + off;
                let ports = w.frame.get(at..at + 4)?;
                if m & mode::SRCPORT != 0 {
                    k[32..34].copy_from_slice(&ports[..2]);
                }
                if m & mode::DSTPORT != 0 {
                    k[34..36].copy_from_slice(&ports[2..]);
                }
            }
        }
        Some(k)
    }

    /// `hashlimit_mt_common` on the key at jiffy `now`: whether the key's bucket had a packet
    /// to give (and gave it), or `None` when the key is new and the table full.
    fn take(&self, key: &Key, now: u64) -> Option<bool> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let expire = u64::from(self.cfg.expire);
        match s.next_gc {
            None => s.next_gc = Some(now + u64::from(self.cfg.gc_interval)),
            Some(at) if after_eq(now, at) => {
                s.entries.retain(|_, e| !after_eq(now, e.expires));
                s.next_gc = Some(now + u64::from(self.cfg.gc_interval));
            }
            Some(_) => {}
        }
        let full = s.entries.len() >= self.bound;
        let e = match s.entries.get_mut(key) {
            Some(e) => {
                e.expires = now.wrapping_add(expire);
                // rateinfo_recalc; a clock behind the last refill (another worker's) refills
                // nothing.
                let delta = now.wrapping_sub(e.prev);
                if delta != 0 && (delta as i64) > 0 {
                    e.prev = now;
                    e.credit = e
                        .credit
                        .wrapping_add(delta.wrapping_mul(CREDITS_PER_JIFFY))
                        .min(self.cap);
                }
                e
            }
            None if full => return None,
            None => s.entries.entry(*key).or_insert(Entry {
                expires: now.wrapping_add(expire),
                prev: now,
                credit: self.cap,
            }),
        };
        if e.credit >= self.cost {
            e.credit -= self.cost;
            Some(true)
        } else {
            Some(false)
        }
    }

    /// How many keys the table holds.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl HashLimitMatch {
    /// The match for packet `p` with bytes `w`, or `None` where Linux drops the packet
    /// (`hotdrop`: a new key in a full table, or ports the frame does not hold).
    pub fn held(&self, p: &PacketMeta, w: &Wire<'_>) -> Option<bool> {
        let key = self.table.key(p, w)?;
        let gave = self.table.take(&key, w.now_ns / NS_PER_JIFFY)?;
        Some(gave != self.above)
    }
}

/// The registry: every table some rule set (or a rule file being loaded) names.
static TABLES: Mutex<Vec<Weak<HashTable>>> = Mutex::new(Vec::new());

/// The table `name` of `family`: the live one (with its own parameters), or a new one with
/// `cfg`, whose memory for [`Config::bound`] keys is made now. `cfg` must have passed
/// [`credits`] and have a bound of at most [`MAX_ENTRIES`].
pub fn table(name: &str, family: Family, cfg: Config) -> Arc<HashTable> {
    let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    tables.retain(|w| w.strong_count() > 0);
    if let Some(t) = tables
        .iter()
        .filter_map(Weak::upgrade)
        .find(|t| &*t.name == name && t.family == family)
    {
        return t;
    }
    let (cost, cap) = credits(cfg.avg, cfg.burst).unwrap_or((u64::MAX, 0));
    let bound = cfg.bound().min(u64::from(MAX_ENTRIES)) as usize;
    // Twice the bound: a table that removes keys never needs more than it has (hashbrown
    // rehashes in place while at most half full).
    let t = Arc::new(HashTable {
        name: name.into(),
        family,
        cfg,
        cost,
        cap,
        bound,
        state: Mutex::new(State {
            entries: HashMap::with_capacity(bound * 2),
            next_gc: None,
        }),
    });
    tables.push(Arc::downgrade(&t));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(avg: u64, burst: u64, mode: u8) -> Config {
        Config {
            mode,
            avg,
            burst,
            size: 4,
            max: 4,
            gc_interval: 1000,
            expire: 10_000,
            srcmask: 32,
            dstmask: 32,
        }
    }

    #[test]
    fn credits_are_the_kernels() {
        // 1/sec: 137438953 credits per millionth, as /proc/net/ipt_hashlimit shows.
        assert_eq!(
            credits(1_000_000, 2),
            Some((137_438_953_000_000, 274_877_906_000_000))
        );
        // 1/day with a burst of 200000 overflows: refused, as the kernel's ERANGE.
        assert_eq!(credits(86_400_000_000, 200_000), None);
        assert_eq!(credits(1_000_000, 0), None);
        assert!(credits(86_400_000_000, 1).is_some());
    }

    #[test]
    fn masks_are_whole_words_after_the_prefix() {
        let mut a = [10, 1, 2, 3];
        mask_addr(&mut a, 24);
        assert_eq!(a, [10, 1, 2, 0]);
        mask_addr(&mut a, 0);
        assert_eq!(a, [0; 4]);
        let mut b = [0xffu8; 16];
        mask_addr(&mut b, 36);
        assert_eq!(b[..8], [0xff, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0]);
        assert_eq!(b[8..], [0; 8]);
    }

    #[test]
    fn buckets_refill_expire_and_the_bound() {
        let t = table("hashlimit-unit-1", Family::V4, cfg(100_000, 3, mode::SRCIP));
        let k = |a: u8| {
            let mut k = [0u8; 36];
            k[3] = a;
            k
        };
        // 10/sec, burst 3: three at once, then one per 100 ms.
        assert!((0..3).all(|_| t.take(&k(1), 1000) == Some(true)));
        assert_eq!(t.take(&k(1), 1000), Some(false));
        assert_eq!(t.take(&k(1), 1099), Some(false));
        assert_eq!(t.take(&k(1), 1100), Some(true));
        // Another key has its own bucket; a lagging clock refills nothing.
        assert_eq!(t.take(&k(2), 1100), Some(true));
        assert_eq!(t.take(&k(1), 1050), Some(false));
        // The bound (4, the size; a max below the size would be raised to it): a fifth key is
        // dropped.
        assert_eq!(t.take(&k(3), 1100), Some(true));
        assert_eq!(t.take(&k(4), 1100), Some(true));
        assert_eq!(t.take(&k(5), 1100), None);
        assert_eq!(t.len(), 4);
        // 10 s idle: the garbage collection after it takes them all; the key starts afresh.
        assert_eq!(t.take(&k(5), 11_100), Some(true));
        assert_eq!(t.len(), 1);
        // The same name and family is the same table, whatever the parameters asked.
        let again = table("hashlimit-unit-1", Family::V4, cfg(1, 1, 0));
        assert!(Arc::ptr_eq(&t, &again) && again.cfg.burst == 3);
        let v6 = table("hashlimit-unit-1", Family::V6, cfg(1, 1, 0));
        assert!(!Arc::ptr_eq(&t, &v6));
    }
}
