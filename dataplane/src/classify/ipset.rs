//! `-m set` (xt_set revision 4) over ipset sets: the sets of an `ipset save` file, held
//! immutable beside the rule set that names them, and the match that tests a packet against
//! one.
//!
//! Every type is one hash table of [`Key`]s (hashbrown): the address dimensions as 128-bit
//! words (IPv4 v4-mapped) under the set's netmask, the port dimension as the protocol and the
//! port (ICMP and ICMPv6: `type << 8 | code`), and for the types with a network dimension
//! (hash:net, hash:net,port, hash:ip,port,net) its prefix length. Those types keep the prefix
//! lengths present, longest first, and a lookup tries each in turn, as the kernel's
//! `mtype_test_cidrs` does: the first entry found (not expired) answers, and a `nomatch` entry
//! answers "not in the set" (or, under `--return-nomatch`, "in the set", while a plain entry
//! then answers "not in the set"). The bitmap types are the same table with their range
//! checked first.
//!
//! Entry timeouts count from the set's start: the packet time (milliseconds) of the first
//! packet that tests an entry with a timeout after the sets were loaded, which is when the
//! kernel's countdown of a restored set is already running; an entry is gone once more than its
//! timeout has passed since (`ip_set_timeout_expired`). Replay is therefore deterministic.
//!
//! Nothing here is looked at by a rule set without `-m set`.

use super::{PacketMeta, Wire};
use crate::wire::{ip_proto, Family};
use arc_swap::ArcSwap;
use hashbrown::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The set types Rampart holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    HashIp,
    HashNet,
    HashIpPort,
    HashNetPort,
    HashIpPortIp,
    HashIpPortNet,
    HashNetNet,
    HashNetPortNet,
    BitmapIp,
    BitmapPort,
    ListSet,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::HashIp,
        Kind::HashNet,
        Kind::HashIpPort,
        Kind::HashNetPort,
        Kind::HashIpPortIp,
        Kind::HashIpPortNet,
        Kind::HashNetNet,
        Kind::HashNetPortNet,
        Kind::BitmapIp,
        Kind::BitmapPort,
        Kind::ListSet,
    ];

    /// The type's name as ipset spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::HashIp => "hash:ip",
            Kind::HashNet => "hash:net",
            Kind::HashIpPort => "hash:ip,port",
            Kind::HashNetPort => "hash:net,port",
            Kind::HashIpPortIp => "hash:ip,port,ip",
            Kind::HashIpPortNet => "hash:ip,port,net",
            Kind::HashNetNet => "hash:net,net",
            Kind::HashNetPortNet => "hash:net,port,net",
            Kind::BitmapIp => "bitmap:ip",
            Kind::BitmapPort => "bitmap:port",
            Kind::ListSet => "list:set",
        }
    }

    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The type's dimension: how many src/dst flags a match needs at least.
    pub fn dimension(self) -> u8 {
        match self {
            Kind::HashIpPort | Kind::HashNetPort | Kind::HashNetNet => 2,
            Kind::HashIpPortIp | Kind::HashIpPortNet | Kind::HashNetPortNet => 3,
            _ => 1,
        }
    }

    /// The dimension that is a network (with a prefix length per entry), if any.
    pub fn net_dim(self) -> Option<usize> {
        match self {
            Kind::HashNet | Kind::HashNetPort | Kind::HashNetNet | Kind::HashNetPortNet => Some(0),
            Kind::HashIpPortNet => Some(2),
            _ => None,
        }
    }

    /// Whether the last address dimension is a network too (hash:net,net and
    /// hash:net,port,net): its prefix length is [`Key::cidr2`], and a lookup tries every pair
    /// of prefix lengths present, the first dimension's longest first and within it the
    /// second's (`mtype_test_cidrs` with `IPSET_NET_COUNT` 2).
    pub fn two_nets(self) -> bool {
        matches!(self, Kind::HashNetNet | Kind::HashNetPortNet)
    }

    /// Whether the second dimension is a protocol and port.
    pub fn has_port(self) -> bool {
        matches!(
            self,
            Kind::HashIpPort
                | Kind::HashNetPort
                | Kind::HashIpPortIp
                | Kind::HashIpPortNet
                | Kind::HashNetPortNet
        )
    }

    /// Whether entries may be `nomatch` (the kernel's `IPSET_TYPE_NOMATCH`).
    pub fn nomatch(self) -> bool {
        self.net_dim().is_some()
    }

    /// Whether the type is of one family (`family inet|inet6`); bitmap:port and list:set are
    /// of both.
    pub fn has_family(self) -> bool {
        !matches!(self, Kind::BitmapPort | Kind::ListSet)
    }
}

/// An entry of a hash or bitmap set: the address dimensions (the first in `a`, the third in
/// `b`), the protocol and port, and the network dimension's prefix length (0 for types
/// without one).
#[derive(Clone, Copy, Debug, Default, Eq, PartialOrd, Ord)]
pub struct Key {
    pub a: u128,
    pub b: u128,
    pub port: u16,
    pub proto: u8,
    pub cidr: u8,
    /// The second network's prefix length ([`Kind::two_nets`]; 0 for the other types).
    pub cidr2: u8,
}

impl Key {
    /// The port, protocol and prefix lengths as one word.
    #[inline(always)]
    fn rest(&self) -> u64 {
        u64::from(self.port)
            | u64::from(self.proto) << 16
            | u64::from(self.cidr) << 24
            | u64::from(self.cidr2) << 32
    }
}

impl PartialEq for Key {
    /// Three compares (the table's probe compares keys).
    #[inline(always)]
    fn eq(&self, o: &Key) -> bool {
        self.a == o.a && self.b == o.b && self.rest() == o.rest()
    }
}

impl std::hash::Hash for Key {
    /// Three words: the addresses, then the port, protocol and prefix lengths as one.
    #[inline(always)]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u128(self.a);
        h.write_u128(self.b);
        h.write_u64(self.rest());
    }
}

/// What an entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elem {
    /// A `nomatch` entry.
    pub nomatch: bool,
    /// Milliseconds after the set's start when the entry is gone; 0: never.
    pub expires: u64,
}

/// One set.
#[derive(Clone, Debug)]
pub struct IpSet {
    pub name: String,
    pub kind: Kind,
    /// `None` for the types of both families.
    pub family: Option<Family>,
    /// hash:ip and bitmap:ip: the prefix length addresses are taken under (the family's
    /// length when not given).
    pub netmask: u8,
    /// The bitmaps' range (addresses v4-mapped, or ports), inclusive.
    pub range: (u128, u128),
    /// The set's default timeout in seconds (`timeout N` on `create`); `None`: no timeouts.
    pub timeout: Option<u32>,
    /// The most entries (hash types: `maxelem`, bitmaps: the range, list:set: `size`).
    pub maxelem: u32,
    pub entries: HashMap<Key, Elem>,
    /// The prefix lengths present in a type with a network dimension, longest first, with how
    /// many entries have each.
    pub cidrs: Vec<(u8, u32)>,
    /// The same for the second network of [`Kind::two_nets`] types.
    pub cidrs2: Vec<(u8, u32)>,
    /// list:set: the member sets (indexes into [`IpSets::sets`]) in order, with their expiry.
    pub members: Vec<(usize, u64)>,
    /// The `create` line's options after type and family, as given (for `ipset list`).
    pub options: String,
}

impl IpSet {
    /// An empty set.
    pub fn new(name: &str, kind: Kind, family: Option<Family>) -> IpSet {
        let host = if family == Some(Family::V6) { 128 } else { 32 };
        IpSet {
            name: name.to_string(),
            kind,
            family,
            netmask: host,
            range: (0, 0),
            timeout: None,
            maxelem: 65536,
            entries: HashMap::new(),
            cidrs: Vec::new(),
            cidrs2: Vec::new(),
            members: Vec::new(),
            options: String::new(),
        }
    }

    /// How many entries (or members) it holds.
    pub fn len(&self) -> usize {
        if self.kind == Kind::ListSet {
            self.members.len()
        } else {
            self.entries.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds (or replaces) an entry, keeping the prefix lengths present.
    pub fn insert(&mut self, key: Key, elem: Elem) {
        if self.entries.insert(key, elem).is_none() && self.kind.nomatch() {
            count_in(&mut self.cidrs, key.cidr);
            if self.kind.two_nets() {
                count_in(&mut self.cidrs2, key.cidr2);
            }
        }
    }

    /// Removes an entry; whether it was there.
    pub fn remove(&mut self, key: &Key) -> bool {
        if self.entries.remove(key).is_none() {
            return false;
        }
        if self.kind.nomatch() {
            count_out(&mut self.cidrs, key.cidr);
            if self.kind.two_nets() {
                count_out(&mut self.cidrs2, key.cidr2);
            }
        }
        true
    }

    /// The set with no entries (its entries not copied).
    pub fn emptied(&self) -> IpSet {
        IpSet {
            name: self.name.clone(),
            kind: self.kind,
            family: self.family,
            netmask: self.netmask,
            range: self.range,
            timeout: self.timeout,
            maxelem: self.maxelem,
            entries: HashMap::new(),
            cidrs: Vec::new(),
            cidrs2: Vec::new(),
            members: Vec::new(),
            options: self.options.clone(),
        }
    }

    /// Removes the entries (and members) gone at `now_ms` after the sets' start; how many.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        let gone = |e: u64| e != 0 && now_ms > e;
        let before = self.len();
        let dead: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| gone(e.expires))
            .map(|(k, _)| *k)
            .collect();
        for k in &dead {
            self.remove(k);
        }
        self.members.retain(|m| !gone(m.1));
        before - self.len()
    }

    /// Removes every entry.
    pub fn flush(&mut self) {
        self.entries.clear();
        self.cidrs.clear();
        self.cidrs2.clear();
        self.members.clear();
    }

    /// The address of a hash or bitmap set's first dimension under the set's netmask.
    pub fn host_bits(&self) -> u8 {
        if self.family == Some(Family::V6) {
            128
        } else {
            32
        }
    }
}

/// One more entry of prefix length `cidr` in `cidrs` (kept longest first).
fn count_in(cidrs: &mut Vec<(u8, u32)>, cidr: u8) {
    match cidrs.iter_mut().find(|c| c.0 == cidr) {
        Some(c) => c.1 += 1,
        None => {
            cidrs.push((cidr, 1));
            cidrs.sort_by_key(|c| std::cmp::Reverse(c.0));
        }
    }
}

/// One entry fewer of prefix length `cidr` in `cidrs`.
fn count_out(cidrs: &mut Vec<(u8, u32)>, cidr: u8) {
    if let Some(i) = cidrs.iter().position(|c| c.0 == cidr) {
        cidrs[i].1 -= 1;
        if cidrs[i].1 == 0 {
            cidrs.remove(i);
        }
    }
}

/// `a` with only its first `len` bits of the family's `host` bits kept (IPv4 v4-mapped: its
/// 96-bit prefix is kept too).
#[inline]
pub fn mask(a: u128, len: u8, host: u8) -> u128 {
    let drop = u32::from(host.saturating_sub(len));
    if drop >= 128 {
        0
    } else {
        a & !((1u128 << drop) - 1)
    }
}

/// The sets of one `ipset save` file, with the packet time they started at. Each set is
/// behind its own `Arc`, so a changed copy of the whole ([`SetsCell`]) shares every set but
/// the one changed.
#[derive(Debug)]
pub struct IpSets {
    pub sets: Vec<Arc<IpSet>>,
    /// Milliseconds of packet time at the first test of an entry with a timeout;
    /// `u64::MAX` before.
    start: AtomicU64,
}

impl Clone for IpSets {
    fn clone(&self) -> IpSets {
        IpSets {
            sets: self.sets.clone(),
            start: AtomicU64::new(self.start.load(Ordering::Relaxed)),
        }
    }
}

impl Default for IpSets {
    fn default() -> IpSets {
        IpSets::new(Vec::new())
    }
}

impl IpSets {
    pub fn new(sets: Vec<IpSet>) -> IpSets {
        IpSets {
            sets: sets.into_iter().map(Arc::new).collect(),
            start: AtomicU64::new(u64::MAX),
        }
    }

    /// Set `i` to change (copied first when another snapshot shares it).
    pub fn set_mut(&mut self, i: usize) -> &mut IpSet {
        Arc::make_mut(&mut self.sets[i])
    }

    /// Milliseconds since the sets' start at packet time `now_ns`, starting them then if no
    /// packet has (the control thread's entry timeouts count on the workers' clock).
    pub fn elapsed_ms(&self, now_ns: u64) -> u64 {
        self.elapsed(now_ns)
    }

    /// The index of the set called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.sets.iter().position(|s| s.name == name)
    }

    /// Milliseconds since the sets' start at packet time `now_ns` (the first call starts it).
    #[inline]
    fn elapsed(&self, now_ns: u64) -> u64 {
        let now = now_ns / 1_000_000;
        let start =
            match self
                .start
                .compare_exchange(u64::MAX, now, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => now,
                Err(s) => s,
            };
        now.saturating_sub(start)
    }

    /// Whether an entry expiring at `expires` is still there at `now_ns`.
    #[inline]
    fn live(&self, expires: u64, now_ns: u64) -> bool {
        expires == 0 || self.elapsed(now_ns) <= expires
    }

    /// The kernel's `ip_set_test` for set `i`: `dirs` bit d set when dimension d reads the
    /// source, `dim` the number of flags the rule gave.
    pub fn test(
        &self,
        i: usize,
        p: &PacketMeta,
        w: &Wire<'_>,
        dirs: u8,
        dim: u8,
        return_nomatch: bool,
    ) -> bool {
        let Some(s) = self.sets.get(i).map(|s| &**s) else {
            return false;
        };
        if dim < s.kind.dimension() || s.family.is_some_and(|f| f != p.key.family) {
            return false;
        }
        if s.kind == Kind::ListSet {
            return s.members.iter().any(|&(m, expires)| {
                m != i
                    && self.sets.get(m).is_some_and(|ms| ms.kind != Kind::ListSet)
                    && self.live(expires, w.now_ns)
                    && self.test(m, p, w, dirs, dim, return_nomatch)
            });
        }
        match self.lookup(s, p, w, dirs) {
            None => false,
            Some(nomatch) if return_nomatch && s.kind.nomatch() => nomatch,
            Some(nomatch) => !nomatch,
        }
    }

    /// [`IpSets::lookup`] for the types of two networks: every pair of prefix lengths.
    #[inline(never)]
    fn lookup_pairs(&self, s: &IpSet, mut key: Key, now_ns: u64) -> Option<bool> {
        let host = s.host_bits();
        let (a, b) = (key.a, key.b);
        for &(c0, _) in &s.cidrs {
            key.a = mask(a, c0, host);
            key.cidr = c0;
            for &(c1, _) in &s.cidrs2 {
                key.b = mask(b, c1, host);
                key.cidr2 = c1;
                if let Some(e) = s.entries.get(&key) {
                    if self.live(e.expires, now_ns) {
                        return Some(e.nomatch);
                    }
                }
            }
        }
        None
    }

    /// The entry a packet finds in a hash or bitmap set: `Some(nomatch)`, or `None`.
    fn lookup(&self, s: &IpSet, p: &PacketMeta, w: &Wire<'_>, dirs: u8) -> Option<bool> {
        let addr = |d: u8| {
            let a = if dirs & (1 << d) != 0 {
                p.key.src
            } else {
                p.key.dst
            };
            u128::from_be_bytes(a.0)
        };
        let host = s.host_bits();
        let mut key = Key::default();
        match s.kind {
            Kind::HashIp => {
                key.a = mask(addr(0), s.netmask, host);
                // hash:ip's kadt: the unspecified address never matches.
                if key.a == 0 || host == 32 && key.a as u32 == 0 {
                    return None;
                }
            }
            Kind::BitmapIp => {
                let a = addr(0);
                if a < s.range.0 || a > s.range.1 {
                    return None;
                }
                key.a = mask(a, s.netmask, host);
            }
            Kind::BitmapPort => {
                let (port, proto) = l4_port(p, w, dirs & 1 != 0)?;
                if !matches!(proto, ip_proto::TCP | ip_proto::UDP) {
                    return None;
                }
                if u128::from(port) < s.range.0 || u128::from(port) > s.range.1 {
                    return None;
                }
                key.port = port;
            }
            Kind::ListSet => return None,
            Kind::HashNet => key.a = addr(0),
            Kind::HashNetNet => {
                key.a = addr(0);
                key.b = addr(1);
            }
            _ => {
                key.a = addr(0);
                (key.port, key.proto) = l4_port(p, w, dirs & 2 != 0)?;
                if matches!(
                    s.kind,
                    Kind::HashIpPortIp | Kind::HashIpPortNet | Kind::HashNetPortNet
                ) {
                    key.b = addr(2);
                }
            }
        }
        let Some(nd) = s.kind.net_dim() else {
            return s
                .entries
                .get(&key)
                .filter(|e| self.live(e.expires, w.now_ns))
                .map(|e| e.nomatch);
        };
        if s.kind.two_nets() {
            return self.lookup_pairs(s, key, w.now_ns);
        }
        let whole = if nd == 0 { key.a } else { key.b };
        for &(cidr, _) in &s.cidrs {
            let m = mask(whole, cidr, host);
            if nd == 0 {
                key.a = m;
            } else {
                key.b = m;
            }
            key.cidr = cidr;
            if let Some(e) = s.entries.get(&key) {
                if self.live(e.expires, w.now_ns) {
                    return Some(e.nomatch);
                }
            }
        }
        None
    }
}

/// ipset's `ip_set_get_ip4_port` / `ip_set_get_ip6_port`: the packet's port (`src` or
/// destination; ICMP and ICMPv6 `type << 8 | code` either way, 0 for protocols without ports)
/// and protocol; `None` where the kernel answers false (a non-first fragment of a protocol with
/// ports, any non-first IPv6 fragment, IPv4 protocol 0, a header the packet cuts short).
#[inline]
pub fn l4_port(p: &PacketMeta, w: &Wire<'_>, src: bool) -> Option<(u16, u8)> {
    const SCTP: u8 = 132;
    const UDPLITE: u8 = 136;
    let proto = p.key.proto;
    let v6 = p.key.family == Family::V6;
    if !v6 && proto == 0 {
        return None;
    }
    let need = match proto {
        ip_proto::TCP => 20,
        SCTP => 12,
        ip_proto::UDP | UDPLITE | ip_proto::ICMP | ip_proto::ICMPV6 => 8,
        _ => 0,
    };
    if p.later_fragment {
        return if v6 || need != 0 && proto != ip_proto::ICMPV6 {
            None
        } else {
            Some((0, proto))
        };
    }
    if need == 0 {
        return Some((0, proto));
    }
    if w.l4 == 0 {
        return None;
    }
    let l4 = usize::from(w.l4);
    let h = w.frame.get(l4..l4 + need)?;
    let at = if matches!(proto, ip_proto::ICMP | ip_proto::ICMPV6) || src {
        0
    } else {
        2
    };
    Some((u16::from_be_bytes([h[at], h[at + 1]]), proto))
}

/// The live sets of a rule set: the control thread replaces the snapshot with a changed copy
/// (`ipset add` at run time) and bumps the cell's generation. Sets keep their indexes from
/// snapshot to snapshot: only entries change.
///
/// A worker keeps the snapshot it tests in a thread-local cache ([`SetsCell::with`]), taken
/// anew when the generation differs (generations are drawn from one process-wide counter, so
/// no two snapshots of any cells share one: a new cell made where a freed one was cannot be
/// taken for it): a check costs a thread-local access and two
/// compares, no atomic read-modify-write. The cache holds a strong reference, so a replaced
/// snapshot is freed by the control thread, once it holds the only reference
/// ([`Arc::strong_count`] 1: no cache has it, and none can take it again), never by a worker.
#[derive(Debug)]
pub struct SetsCell {
    cur: ArcSwap<IpSets>,
    generation: AtomicU64,
}

/// One thread's snapshot: its generation, the snapshot.
type Cached = Option<(u64, Arc<IpSets>)>;

/// The next generation any cell's snapshot takes (see [`SetsCell`]).
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

thread_local! {
    static CACHE: std::cell::RefCell<Cached> = const { std::cell::RefCell::new(None) };
}

impl SetsCell {
    pub fn new(sets: IpSets) -> Arc<SetsCell> {
        Arc::new(SetsCell {
            cur: ArcSwap::from_pointee(sets),
            generation: AtomicU64::new(next_generation()),
        })
    }

    /// The snapshot now in force.
    pub fn snapshot(&self) -> Arc<IpSets> {
        self.cur.load_full()
    }

    /// Puts `next` in force; returns the snapshot it replaces, for the caller to free once it
    /// holds the only reference.
    pub fn replace(&self, next: IpSets) -> Arc<IpSets> {
        let old = self.cur.swap(Arc::new(next));
        self.generation.store(next_generation(), Ordering::Release);
        old
    }

    /// `f` on the snapshot in force, through this thread's cache.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&IpSets) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            match &*c {
                Some((g, sets)) if *g == generation => f(sets),
                _ => {
                    // Loaded after the generation was read: at least as new as it.
                    let sets = self.cur.load_full();
                    let r = f(&sets);
                    *c = Some((generation, sets));
                    r
                }
            }
        })
    }
}

/// One `-m set --match-set NAME FLAGS` match.
#[derive(Clone, Debug)]
pub struct SetMatch {
    pub sets: Arc<SetsCell>,
    pub index: usize,
    /// Bit d set: dimension d reads the source.
    pub dirs: u8,
    /// How many flags the rule gave.
    pub dim: u8,
    /// `! --match-set`.
    pub invert: bool,
    /// `--return-nomatch`.
    pub return_nomatch: bool,
}

impl SetMatch {
    #[inline]
    pub fn holds(&self, p: &PacketMeta, w: &Wire<'_>) -> bool {
        self.sets
            .with(|s| s.test(self.index, p, w, self.dirs, self.dim, self.return_nomatch))
            != self.invert
    }

    /// The set's name.
    pub fn name(&self) -> String {
        self.sets
            .snapshot()
            .sets
            .get(self.index)
            .map_or(String::new(), |s| s.name.clone())
    }
}

impl PartialEq for SetMatch {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.sets, &o.sets)
            && (
                self.index,
                self.dirs,
                self.dim,
                self.invert,
                self.return_nomatch,
            ) == (o.index, o.dirs, o.dim, o.invert, o.return_nomatch)
    }
}

impl Eq for SetMatch {}

impl std::hash::Hash for SetMatch {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (Arc::as_ptr(&self.sets) as usize).hash(h);
        (
            self.index,
            self.dirs,
            self.dim,
            self.invert,
            self.return_nomatch,
        )
            .hash(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FlowKey, IpAddr128};
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> u128 {
        u128::from_be_bytes(IpAddr128::from_v4(s.parse::<Ipv4Addr>().unwrap()).0)
    }

    fn meta(src: &str, dst: &str) -> PacketMeta {
        PacketMeta {
            key: FlowKey::new_v4(src.parse().unwrap(), dst.parse().unwrap(), 17, 1, 2),
            in_port: 0,
            out_port: 1,
            ct_state: 0,
            tcp_flags: 0,
            later_fragment: false,
        }
    }

    #[test]
    fn most_specific_prefix_answers_and_nomatch() {
        let mut s = IpSet::new("n", Kind::HashNet, Some(Family::V4));
        let net = |a: &str, c: u8| Key {
            a: mask(v4(a), c, 32),
            cidr: c,
            ..Key::default()
        };
        let yes = Elem {
            nomatch: false,
            expires: 0,
        };
        let no = Elem {
            nomatch: true,
            expires: 0,
        };
        s.insert(net("10.0.0.0", 8), yes);
        s.insert(net("10.1.0.0", 16), no);
        s.insert(net("10.1.2.0", 24), yes);
        assert_eq!(s.cidrs, vec![(24, 1), (16, 1), (8, 1)]);
        let sets = IpSets::new(vec![s]);
        let w = Wire::NONE;
        let t = |a: &str, rn: bool| sets.test(0, &meta(a, "1.1.1.1"), &w, 1, 1, rn);
        assert!(t("10.9.9.9", false) && !t("10.1.9.9", false) && t("10.1.2.3", false));
        assert!(!t("11.0.0.1", false));
        // --return-nomatch turns the answers of found entries round.
        assert!(!t("10.9.9.9", true) && t("10.1.9.9", true) && !t("11.0.0.1", true));
        // Fewer flags than the type's dimension, or the other family: never in the set.
        assert!(!sets.test(0, &meta("10.0.0.1", "1.1.1.1"), &w, 1, 0, false));
    }

    #[test]
    fn a_replaced_snapshot_is_seen_at_the_next_check_and_freed_by_the_replacer() {
        let cell = SetsCell::new(IpSets::new(vec![IpSet::new(
            "a",
            Kind::HashIp,
            Some(Family::V4),
        )]));
        assert_eq!(cell.with(|s| s.sets[0].len()), 0);
        let mut next = (*cell.snapshot()).clone();
        let key = Key {
            a: v4("10.0.0.1"),
            ..Key::default()
        };
        let elem = Elem {
            nomatch: false,
            expires: 0,
        };
        next.set_mut(0).insert(key, elem);
        let old = cell.replace(next);
        assert_eq!(Arc::strong_count(&old), 2, "this thread's cache holds it");
        assert_eq!(cell.with(|s| s.sets[0].len()), 1);
        assert_eq!(
            Arc::strong_count(&old),
            1,
            "the cache moved on: the replacer frees it"
        );
        // Another cell takes the cache over, and the first is taken again after it.
        let other = SetsCell::new(IpSets::default());
        assert_eq!(other.with(|s| s.sets.len()), 0);
        assert_eq!(cell.with(|s| s.sets[0].len()), 1);
    }

    #[test]
    fn a_new_cell_where_a_freed_one_was_is_not_taken_for_it() {
        // The allocator hands a freed cell's memory to the next cell of its size: a cache
        // keyed by the cell's address and a per-cell generation took the new cell's first
        // snapshot for the freed cell's.
        let mut reused = 0;
        for _ in 0..64 {
            let a = SetsCell::new(IpSets::new(vec![IpSet::new(
                "a",
                Kind::HashIp,
                Some(Family::V4),
            )]));
            assert_eq!(a.with(|s| s.sets.len()), 1);
            let at = Arc::as_ptr(&a) as usize;
            drop(a);
            let b = SetsCell::new(IpSets::default());
            reused += usize::from(Arc::as_ptr(&b) as usize == at);
            assert_eq!(b.with(|s| s.sets.len()), 0, "the new cell's own sets");
        }
        assert!(
            reused > 0,
            "the case needs the address taken again at least once"
        );
    }

    #[test]
    fn timeouts_count_from_the_first_packet() {
        let mut s = IpSet::new("t", Kind::HashIp, Some(Family::V4));
        s.insert(
            Key {
                a: v4("10.0.0.1"),
                ..Key::default()
            },
            Elem {
                nomatch: false,
                expires: 5000,
            },
        );
        let sets = IpSets::new(vec![s]);
        let p = meta("10.0.0.1", "1.1.1.1");
        let at = |ms: u64| Wire {
            now_ns: ms * 1_000_000,
            ..Wire::NONE
        };
        assert!(sets.test(0, &p, &at(1000), 1, 1, false));
        assert!(sets.test(0, &p, &at(6000), 1, 1, false));
        assert!(!sets.test(0, &p, &at(6001), 1, 1, false));
    }
}
