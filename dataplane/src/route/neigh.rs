//! FAST PATH: no allocation, lock, syscall or log after [`NeighTable::new`].
//!
//! The neighbour table (ARP cache for IPv4, neighbour cache for IPv6, RFC 4861 §7.3), per
//! worker, keyed by (port, address), bounded in entries and in packets waiting per entry.
//!
//! States, a simplification of RFC 4861's (DELAY and PROBE fold into STALE's probing):
//!
//! - **Incomplete**: a request was sent; packets wait in the entry's queue (at most
//!   `queue_len`, more are dropped and counted). Requests are repeated every `retrans_ns`;
//!   after `max_probes` unanswered ones the entry fails: its queued packets are handed back
//!   (a router answers them with host unreachable) and counted, and the entry is removed.
//! - **Reachable**: confirmed by a solicited answer within `reachable_ns`; used as is.
//! - **Stale**: older than that, or learnt from an unsolicited message; still used, and a use
//!   asks the caller for a unicast probe at most once per `retrans_ns`. An answer makes it
//!   Reachable again; an entry unused for `gc_ns` is removed.
//!
//! - **Permanent**: configured by the operator (Linux's `ip neigh add ... nud permanent`):
//!   always used as is, never probed, aged, evicted or changed by what the network says.
//!
//! A new entry that finds the table full replaces the least recently used entry with nothing
//! queued, if there is one; otherwise the packet is dropped and counted (`table_full`).
//! [`NeighTable::tick`] runs the timers; call it every few milliseconds (its cost is linear in
//! the capacity; keep that in the thousands).
//!
//! Packets are generic (`P`): owning mbufs in the worker, `Vec<u8>` in tests.

use crate::wire::{IpAddr128, MacAddr};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

/// A keyed multiply-rotate hash for the index: a few instructions per key instead of SipHash's
/// dozens, keyed per table so that addresses a sender picks cannot be made to collide at will.
#[derive(Clone, Copy, Debug)]
struct KeyedHash(u64);

impl BuildHasher for KeyedHash {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher(self.0)
    }
}

struct KeyedHasher(u64);

impl Hasher for KeyedHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i) | 0x100);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let x = self.0;
        (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (x >> 32)
    }
}

impl KeyedHasher {
    #[inline]
    fn mix(&mut self, w: u64) {
        self.0 = (self.0 ^ w)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(27);
    }
}

/// Timers and bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighConfig {
    /// Most entries.
    pub capacity: usize,
    /// Most packets queued per unresolved entry.
    pub queue_len: usize,
    /// How long a confirmation keeps an entry Reachable (Linux: 30 s base).
    pub reachable_ns: u64,
    /// Interval between requests / probes (Linux: 1 s).
    pub retrans_ns: u64,
    /// Requests before an Incomplete entry fails (Linux: 3).
    pub max_probes: u8,
    /// An unused Stale entry is removed after this long.
    pub gc_ns: u64,
}

impl Default for NeighConfig {
    fn default() -> NeighConfig {
        NeighConfig {
            capacity: 4096,
            queue_len: 4,
            reachable_ns: 30_000_000_000,
            retrans_ns: 1_000_000_000,
            max_probes: 3,
            gc_ns: 60_000_000_000,
        }
    }
}

/// An entry's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighState {
    Incomplete {
        probes: u8,
    },
    Reachable,
    Stale,
    /// Configured ([`NeighTable::add_permanent`]).
    Permanent,
}

/// Why a packet was dropped; indexes [`NeighStats::drops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeighDrop {
    /// The entry's queue was full.
    QueueFull = 0,
    /// No entry could be made.
    TableFull = 1,
    /// Resolution failed (the packets queued when it did).
    Failed = 2,
}

/// Counters, single writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighStats {
    pub drops: [u64; 3],
    /// Requests and probes asked for.
    pub solicits: u64,
    pub failures: u64,
    pub evictions: u64,
}

/// What to do with a packet for a neighbour.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<P> {
    /// Send it now to `mac`. `probe`: also send a unicast request to confirm a stale entry.
    Send { mac: MacAddr, pkt: P, probe: bool },
    /// Queued until resolution. `solicit`: send a (broadcast/multicast) request now.
    Queued { solicit: bool },
    /// Dropped (counted).
    Dropped(P, NeighDrop),
}

/// What a timer tick asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickAction {
    /// Send a request for `ip` on `port` (to `mac` when set: a unicast probe).
    Solicit {
        port: u8,
        ip: IpAddr128,
        mac: Option<MacAddr>,
    },
}

/// How an address was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learnt {
    /// An answer to our request (an ARP reply to us, an NA with the S flag): confirms
    /// reachability.
    Answer,
    /// A request addressed to one of our addresses (ARP request, NS with a source link-layer
    /// option): creates a Stale entry when there is none (RFC 826, RFC 4861 §7.2.3).
    Request,
    /// Anything else (gratuitous ARP, unsolicited NA): refreshes an existing entry only, Stale
    /// when the address changed.
    Unsolicited,
}

struct Entry<P> {
    port: u8,
    ip: IpAddr128,
    mac: MacAddr,
    state: NeighState,
    /// When the state's timer fires (next request, end of Reachable).
    deadline_ns: u64,
    used_ns: u64,
    queue: VecDeque<P>,
    live: bool,
}

/// The table; see the module docs.
pub struct NeighTable<P> {
    cfg: NeighConfig,
    entries: Vec<Entry<P>>,
    index: HashMap<(u8, IpAddr128), u32, KeyedHash>,
    /// Where [`NeighTable::resolve`] found each key last, direct-mapped by
    /// [`front_slot`]: a hint only, used when the entry it names is live and holds that key
    /// (a live entry is the one the index names for its key), else the index is asked. A
    /// gateway's packets skip the hash lookup; the entry itself is read, so a changed address,
    /// state or removal is seen by the next packet.
    front: [u32; FRONT],
    free: Vec<u32>,
    stats: NeighStats,
}

/// Slots of [`NeighTable::front`].
const FRONT: usize = 64;

/// The slot of [`NeighTable::front`] for a key.
#[inline(always)]
fn front_slot(port: u8, ip: &IpAddr128) -> usize {
    let mut w = [0u8; 8];
    w.copy_from_slice(&ip.0[8..]);
    let x = u64::from_le_bytes(w) ^ u64::from(port);
    ((x ^ (x >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FRONT.trailing_zeros())) as usize
}

/// A per-table key from the standard library's per-process random state (set-up only).
fn random_key() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x6e65_6967_6862_6f72);
    h.finish()
}

impl<P> NeighTable<P> {
    /// Allocates everything up front. A capacity or queue length of 0 counts as 1 (the packet
    /// that starts a resolution always waits for it).
    pub fn new(cfg: NeighConfig) -> NeighTable<P> {
        let cap = cfg.capacity.max(1);
        let cfg = NeighConfig {
            queue_len: cfg.queue_len.max(1),
            ..cfg
        };
        let entries = (0..cap)
            .map(|_| Entry {
                port: 0,
                ip: IpAddr128::UNSPECIFIED,
                mac: MacAddr::ZERO,
                state: NeighState::Stale,
                deadline_ns: 0,
                used_ns: 0,
                queue: VecDeque::with_capacity(cfg.queue_len),
                live: false,
            })
            .collect();
        NeighTable {
            cfg: NeighConfig {
                capacity: cap,
                ..cfg
            },
            entries,
            index: HashMap::with_capacity_and_hasher(cap, KeyedHash(random_key())),
            front: [u32::MAX; FRONT],
            free: (0..cap as u32).rev().collect(),
            stats: NeighStats::default(),
        }
    }

    pub fn stats(&self) -> &NeighStats {
        &self.stats
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The state and address of an entry, if any.
    pub fn get(&self, port: u8, ip: &IpAddr128) -> Option<(NeighState, MacAddr)> {
        let &i = self.index.get(&(port, *ip))?;
        let e = &self.entries[i as usize];
        Some((e.state, e.mac))
    }

    /// The entry for `ip` on `port`: the one [`NeighTable::front`] names when it holds that
    /// key, else the index's (remembered in `front`).
    #[inline]
    fn find(&mut self, port: u8, ip: &IpAddr128) -> Option<u32> {
        let f = front_slot(port, ip);
        let i = self.front[f];
        if let Some(e) = self.entries.get(i as usize) {
            if e.live && e.port == port && e.ip == *ip {
                #[cfg(test)]
                assert_eq!(self.index.get(&(port, *ip)), Some(&i));
                return Some(i);
            }
        }
        self.find_indexed(f, port, ip)
    }

    #[inline(never)]
    fn find_indexed(&mut self, f: usize, port: u8, ip: &IpAddr128) -> Option<u32> {
        let &i = self.index.get(&(port, *ip))?;
        self.front[f] = i;
        Some(i)
    }

    /// The address to send to `ip` on `port` now, when [`NeighTable::resolve`] would answer
    /// `Send` without a probe (Reachable, Permanent, or Stale before its next probe is due),
    /// with the same effect on the entry (its use noted); `None` otherwise (then ask
    /// `resolve`). The packet stays with the caller.
    #[inline]
    pub fn ready(&mut self, port: u8, ip: &IpAddr128, now_ns: u64) -> Option<MacAddr> {
        let i = self.find(port, ip)?;
        let e = self.entries.get_mut(i as usize)?;
        let ok = match e.state {
            NeighState::Reachable | NeighState::Permanent => true,
            NeighState::Stale => now_ns < e.deadline_ns,
            NeighState::Incomplete { .. } => false,
        };
        if ok {
            e.used_ns = now_ns;
            Some(e.mac)
        } else {
            None
        }
    }

    /// The fate of `pkt`, whose next hop is `ip` on `port`.
    pub fn resolve(&mut self, port: u8, ip: IpAddr128, pkt: P, now_ns: u64) -> Resolution<P> {
        if let Some(i) = self.find(port, &ip) {
            let cfg = self.cfg;
            let e = &mut self.entries[i as usize];
            e.used_ns = now_ns;
            return match e.state {
                NeighState::Reachable | NeighState::Permanent => Resolution::Send {
                    mac: e.mac,
                    pkt,
                    probe: false,
                },
                NeighState::Stale => {
                    let probe = now_ns >= e.deadline_ns;
                    if probe {
                        e.deadline_ns = now_ns + cfg.retrans_ns;
                        self.stats.solicits += 1;
                    }
                    Resolution::Send {
                        mac: e.mac,
                        pkt,
                        probe,
                    }
                }
                NeighState::Incomplete { .. } => {
                    if e.queue.len() >= cfg.queue_len {
                        self.stats.drops[NeighDrop::QueueFull as usize] += 1;
                        Resolution::Dropped(pkt, NeighDrop::QueueFull)
                    } else {
                        e.queue.push_back(pkt);
                        Resolution::Queued { solicit: false }
                    }
                }
            };
        }
        let Some(i) = self.slot() else {
            self.stats.drops[NeighDrop::TableFull as usize] += 1;
            return Resolution::Dropped(pkt, NeighDrop::TableFull);
        };
        let deadline_ns = now_ns + self.cfg.retrans_ns;
        let state = NeighState::Incomplete { probes: 1 };
        let e = self.occupy(i, port, ip, MacAddr::ZERO, state, deadline_ns, now_ns);
        e.queue.clear();
        e.queue.push_back(pkt);
        self.stats.solicits += 1;
        Resolution::Queued { solicit: true }
    }

    /// Makes slot `i` (from [`NeighTable::slot`], or the entry's own) the live entry for `ip`
    /// on `port`, indexed; its queue is left as it was.
    #[allow(clippy::too_many_arguments)]
    fn occupy(
        &mut self,
        i: u32,
        port: u8,
        ip: IpAddr128,
        mac: MacAddr,
        state: NeighState,
        deadline_ns: u64,
        used_ns: u64,
    ) -> &mut Entry<P> {
        self.index.insert((port, ip), i);
        let e = &mut self.entries[i as usize];
        e.port = port;
        e.ip = ip;
        e.mac = mac;
        e.state = state;
        e.deadline_ns = deadline_ns;
        e.used_ns = used_ns;
        e.live = true;
        e
    }

    /// A free slot, evicting the least recently used idle entry when full.
    fn slot(&mut self) -> Option<u32> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        self.evict()
    }

    #[cold]
    #[inline(never)]
    fn evict(&mut self) -> Option<u32> {
        let victim = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live && e.queue.is_empty() && e.state != NeighState::Permanent)
            .min_by_key(|(_, e)| e.used_ns)
            .map(|(i, _)| i as u32)?;
        let e = &mut self.entries[victim as usize];
        self.index.remove(&(e.port, e.ip));
        e.live = false;
        self.stats.evictions += 1;
        Some(victim)
    }

    /// Installs a permanent entry: `ip` on `port` is at `mac` (replacing any entry for it;
    /// packets queued for it go to `send`). False when the table has no room left: permanent
    /// entries are never evicted, so they count against the capacity.
    pub fn add_permanent(
        &mut self,
        port: u8,
        ip: IpAddr128,
        mac: MacAddr,
        mut send: impl FnMut(P, MacAddr),
    ) -> bool {
        let i = match self.index.get(&(port, ip)) {
            Some(&i) => i,
            None => match self.slot() {
                Some(i) => i,
                None => return false,
            },
        };
        // A permanent entry has no timer and is never evicted: its times are not read.
        let e = self.occupy(i, port, ip, mac, NeighState::Permanent, 0, 0);
        while let Some(p) = e.queue.pop_front() {
            send(p, mac);
        }
        true
    }

    /// Learns `mac` for `ip` on `port` from an ARP message or a neighbour solicitation or
    /// advertisement (see [`Learnt`]). Packets that were waiting go to `send` with the address.
    pub fn learn(
        &mut self,
        port: u8,
        ip: IpAddr128,
        mac: MacAddr,
        how: Learnt,
        now_ns: u64,
        mut send: impl FnMut(P, MacAddr),
    ) {
        let solicited = how == Learnt::Answer;
        let create = how == Learnt::Request;
        if !mac.is_unicast() {
            return;
        }
        let i = match self.index.get(&(port, ip)) {
            Some(&i) => i,
            None if create => {
                let Some(i) = self.slot() else {
                    return;
                };
                let e = self.occupy(i, port, ip, mac, NeighState::Stale, now_ns, now_ns);
                e.queue.clear();
                return;
            }
            None => return,
        };
        let cfg = self.cfg;
        let e = &mut self.entries[i as usize];
        let changed = e.mac != mac;
        match e.state {
            NeighState::Incomplete { .. } => {
                e.mac = mac;
                if solicited {
                    e.state = NeighState::Reachable;
                    e.deadline_ns = now_ns + cfg.reachable_ns;
                } else {
                    e.state = NeighState::Stale;
                    e.deadline_ns = now_ns;
                }
                while let Some(p) = e.queue.pop_front() {
                    send(p, mac);
                }
            }
            NeighState::Permanent => {}
            NeighState::Reachable | NeighState::Stale => {
                e.mac = mac;
                if solicited {
                    e.state = NeighState::Reachable;
                    e.deadline_ns = now_ns + cfg.reachable_ns;
                } else if changed {
                    e.state = NeighState::Stale;
                    e.deadline_ns = now_ns;
                }
            }
        }
    }

    /// Runs the timers: repeats requests, fails unanswered entries (their queued packets go to
    /// `failed`, counted), ages Reachable to Stale, removes idle Stale entries.
    pub fn tick(
        &mut self,
        now_ns: u64,
        mut action: impl FnMut(TickAction),
        mut failed: impl FnMut(u8, IpAddr128, P),
    ) {
        let cfg = self.cfg;
        for i in 0..self.entries.len() {
            let e = &mut self.entries[i];
            if !e.live {
                continue;
            }
            match e.state {
                NeighState::Incomplete { probes } if now_ns >= e.deadline_ns => {
                    if probes < cfg.max_probes {
                        e.state = NeighState::Incomplete { probes: probes + 1 };
                        e.deadline_ns = now_ns + cfg.retrans_ns;
                        self.stats.solicits += 1;
                        action(TickAction::Solicit {
                            port: e.port,
                            ip: e.ip,
                            mac: None,
                        });
                    } else {
                        self.stats.failures += 1;
                        let (port, ip) = (e.port, e.ip);
                        while let Some(p) = e.queue.pop_front() {
                            self.stats.drops[NeighDrop::Failed as usize] += 1;
                            failed(port, ip, p);
                        }
                        e.live = false;
                        self.index.remove(&(port, ip));
                        self.free.push(i as u32);
                    }
                }
                NeighState::Reachable if now_ns >= e.deadline_ns => {
                    e.state = NeighState::Stale;
                    e.deadline_ns = now_ns;
                }
                NeighState::Stale if now_ns.saturating_sub(e.used_ns) >= cfg.gc_ns => {
                    e.live = false;
                    self.index.remove(&(e.port, e.ip));
                    self.free.push(i as u32);
                }
                _ => {}
            }
        }
    }

    /// Every entry: (port, address, state, link-layer address), for `ctl`.
    pub fn list(&self) -> impl Iterator<Item = (u8, IpAddr128, NeighState, MacAddr)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.live)
            .map(|e| (e.port, e.ip, e.state, e.mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: u64 = 1_000_000_000;

    fn ip(x: u8) -> IpAddr128 {
        IpAddr128::from_v4(Ipv4Addr::new(10, 0, 0, x))
    }

    fn mac(x: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, x])
    }

    fn table(capacity: usize, queue_len: usize) -> NeighTable<Vec<u8>> {
        NeighTable::new(NeighConfig {
            capacity,
            queue_len,
            ..NeighConfig::default()
        })
    }

    /// A resolution reads the entry as it is: a new address, a removal, and a slot taken by
    /// another neighbour since are all seen by the next packet.
    #[test]
    fn resolution_follows_the_entry() {
        let mut t = table(4, 2);
        t.learn(0, ip(1), mac(1), Learnt::Request, 0, |_, _| {});
        let sent = |r: Resolution<Vec<u8>>| match r {
            Resolution::Send { mac, .. } => Some(mac),
            _ => None,
        };
        assert_eq!(sent(t.resolve(0, ip(1), vec![], 0)), Some(mac(1)));
        t.learn(0, ip(1), mac(2), Learnt::Unsolicited, S, |_, _| {});
        assert_eq!(sent(t.resolve(0, ip(1), vec![], S)), Some(mac(2)));
        assert_eq!(sent(t.resolve(1, ip(1), vec![], S)), None, "another port");
        let gc = NeighConfig::default().gc_ns;
        t.tick(2 * S + gc, |_| {}, |_, _, _| {});
        assert_eq!(t.get(0, &ip(1)), None);
        // Its slot, freed last, is the next one taken.
        t.learn(0, ip(2), mac(3), Learnt::Request, 3 * S + gc, |_, _| {});
        assert_eq!(
            t.resolve(0, ip(1), vec![], 3 * S + gc),
            Resolution::Queued { solicit: true }
        );
        assert_eq!(sent(t.resolve(0, ip(2), vec![], 3 * S + gc)), Some(mac(3)));
    }

    #[test]
    fn permanent_entries_are_used_as_configured_and_kept() {
        let mut t = table(2, 2);
        assert!(t.add_permanent(0, ip(1), mac(1), |_, _| unreachable!()));
        // Used at once, never probed.
        for now in [0, 100 * S, 1000 * S] {
            assert_eq!(
                t.resolve(0, ip(1), vec![1], now),
                Resolution::Send {
                    mac: mac(1),
                    pkt: vec![1],
                    probe: false
                }
            );
        }
        // What the network says does not change it.
        for how in [Learnt::Answer, Learnt::Request, Learnt::Unsolicited] {
            t.learn(0, ip(1), mac(9), how, 0, |_, _| unreachable!());
        }
        assert_eq!(t.get(0, &ip(1)), Some((NeighState::Permanent, mac(1))));
        // Timers and a full table leave it alone.
        t.tick(10_000 * S, |_| {}, |_, _, _| unreachable!());
        assert_eq!(t.get(0, &ip(1)), Some((NeighState::Permanent, mac(1))));
        t.learn(0, ip(2), mac(2), Learnt::Request, 0, |_, _| {});
        t.learn(0, ip(3), mac(3), Learnt::Request, S, |_, _| {});
        assert_eq!(t.get(0, &ip(1)), Some((NeighState::Permanent, mac(1))));
        assert_eq!(t.get(0, &ip(3)).map(|e| e.1), Some(mac(3)));
        assert_eq!(
            t.get(0, &ip(2)),
            None,
            "the learnt entry was evicted, not the permanent one"
        );
        // A permanent entry for an address being resolved sends what waited.
        let mut t = table(2, 2);
        assert_eq!(
            t.resolve(0, ip(4), vec![4], 0),
            Resolution::Queued { solicit: true }
        );
        let mut sent = Vec::new();
        assert!(t.add_permanent(0, ip(4), mac(4), |p, m| sent.push((p, m))));
        assert_eq!(sent, vec![(vec![4], mac(4))]);
        // No room: refused.
        assert!(t.add_permanent(0, ip(5), mac(5), |_, _| {}));
        assert!(!t.add_permanent(0, ip(6), mac(6), |_, _| {}));
    }

    #[test]
    fn incomplete_queues_then_reachable_sends() {
        let mut t = table(8, 2);
        assert_eq!(
            t.resolve(0, ip(1), vec![1], 0),
            Resolution::Queued { solicit: true }
        );
        assert_eq!(
            t.resolve(0, ip(1), vec![2], 1),
            Resolution::Queued { solicit: false }
        );
        assert_eq!(
            t.resolve(0, ip(1), vec![3], 2),
            Resolution::Dropped(vec![3], NeighDrop::QueueFull)
        );
        assert_eq!(t.stats().drops[NeighDrop::QueueFull as usize], 1);
        let mut sent = Vec::new();
        t.learn(0, ip(1), mac(1), Learnt::Answer, 3, |p, m| {
            sent.push((p, m))
        });
        assert_eq!(sent, vec![(vec![1], mac(1)), (vec![2], mac(1))], "in order");
        assert_eq!(t.get(0, &ip(1)), Some((NeighState::Reachable, mac(1))));
        assert_eq!(
            t.resolve(0, ip(1), vec![4], 4),
            Resolution::Send {
                mac: mac(1),
                pkt: vec![4],
                probe: false
            }
        );
        // The same address on another port is another neighbour.
        assert_eq!(
            t.resolve(1, ip(1), vec![5], 4),
            Resolution::Queued { solicit: true }
        );
    }

    #[test]
    fn retries_then_failure_hands_back_the_queue() {
        let mut t = table(8, 4);
        t.resolve(0, ip(2), vec![1], 0);
        t.resolve(0, ip(2), vec![2], 0);
        let mut asked = 0;
        let mut failed = Vec::new();
        for s in 1..=3 {
            t.tick(s * S, |_| asked += 1, |_, _, p| failed.push(p));
        }
        assert_eq!(asked, 2, "max_probes = 3 requests in all");
        assert_eq!(failed, vec![vec![1], vec![2]]);
        assert_eq!(t.stats().drops[NeighDrop::Failed as usize], 2);
        assert_eq!(t.stats().failures, 1);
        assert!(t.is_empty());
        // Before the deadline nothing happens.
        t.resolve(0, ip(3), vec![1], 10 * S);
        t.tick(10 * S + 1, |_| panic!("too early"), |_, _, _| panic!());
    }

    #[test]
    fn reachable_ages_to_stale_which_probes_once_per_interval() {
        let mut t = table(8, 4);
        t.resolve(0, ip(4), vec![], 0);
        t.learn(0, ip(4), mac(4), Learnt::Answer, 0, |_, _| {});
        t.tick(31 * S, |_| {}, |_, _, _| {});
        assert_eq!(t.get(0, &ip(4)).unwrap().0, NeighState::Stale);
        let probe = |r: Resolution<Vec<u8>>| match r {
            Resolution::Send { probe, .. } => probe,
            other => panic!("{other:?}"),
        };
        assert!(probe(t.resolve(0, ip(4), vec![], 31 * S)));
        assert!(!probe(t.resolve(0, ip(4), vec![], 31 * S + 1)));
        assert!(probe(t.resolve(0, ip(4), vec![], 33 * S)));
        // A solicited answer confirms it again; an unsolicited change makes it stale.
        t.learn(0, ip(4), mac(4), Learnt::Answer, 34 * S, |_, _| {});
        assert_eq!(t.get(0, &ip(4)).unwrap().0, NeighState::Reachable);
        t.learn(0, ip(4), mac(5), Learnt::Unsolicited, 35 * S, |_, _| {});
        assert_eq!(t.get(0, &ip(4)), Some((NeighState::Stale, mac(5))));
        // Idle stale entries go.
        t.tick(35 * S + 61 * S, |_| {}, |_, _, _| {});
        assert!(t.is_empty());
    }

    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Resolve(u8),
        Learn(u8, u8),
        Tick(u64),
    }

    proptest! {
        /// Every packet is sent, dropped, handed back on failure or still queued, exactly once;
        /// the bounds hold throughout.
        #[test]
        fn packets_are_conserved(ops in proptest::collection::vec(
            prop_oneof![
                (0u8..6).prop_map(Op::Resolve),
                (0u8..6, 0u8..3).prop_map(|(a, h)| Op::Learn(a, h)),
                (0u64..3_000).prop_map(Op::Tick),
            ],
            0..200,
        )) {
            let mut t: NeighTable<u32> = NeighTable::new(NeighConfig {
                capacity: 3,
                queue_len: 2,
                ..NeighConfig::default()
            });
            let mut now = 0u64;
            let mut next = 0u32;
            let mut out = std::collections::HashSet::new();
            for op in ops {
                match op {
                    Op::Resolve(a) => {
                        let p = next;
                        next += 1;
                        match t.resolve(0, ip(a), p, now) {
                            Resolution::Send { pkt, .. } | Resolution::Dropped(pkt, _) => {
                                prop_assert!(out.insert(pkt));
                            }
                            Resolution::Queued { .. } => {}
                        }
                    }
                    Op::Learn(a, how) => {
                        let how = [Learnt::Answer, Learnt::Request, Learnt::Unsolicited][usize::from(how)];
                        t.learn(0, ip(a), mac(a + 1), how, now, |p, m| {
                            assert_eq!(m, mac(a + 1));
                            assert!(out.insert(p));
                        });
                    }
                    Op::Tick(ms) => {
                        now += ms * 1_000_000;
                        t.tick(now, |_| {}, |_, _, p| assert!(out.insert(p)));
                    }
                }
                prop_assert!(t.len() <= 3);
                prop_assert!(t.entries.iter().all(|e| e.queue.len() <= 2));
            }
            let held: usize = t.entries.iter().filter(|e| e.live).map(|e| e.queue.len()).sum();
            prop_assert_eq!(out.len() + held, next as usize);
        }
    }

    #[test]
    fn unsolicited_learning_and_a_full_table() {
        let mut t = table(2, 1);
        t.learn(0, ip(1), mac(1), Learnt::Unsolicited, 0, |_, _| {});
        assert!(t.is_empty(), "an unsolicited advertisement makes no entry");
        t.learn(0, ip(1), mac(1), Learnt::Request, 0, |_, _| {});
        assert_eq!(t.get(0, &ip(1)), Some((NeighState::Stale, mac(1))));
        t.learn(0, ip(9), MacAddr::BROADCAST, Learnt::Request, 0, |_, _| {});
        assert_eq!(t.get(0, &ip(9)), None, "never a multicast address");
        t.resolve(0, ip(2), vec![], 1);
        // Full: the idle entry (ip 1) is evicted, the waiting one (ip 2) is not.
        assert_eq!(
            t.resolve(0, ip(3), vec![7], 2),
            Resolution::Queued { solicit: true }
        );
        assert_eq!(t.get(0, &ip(1)), None);
        assert_eq!(t.stats().evictions, 1);
        assert_eq!(
            t.resolve(0, ip(4), vec![8], 3),
            Resolution::Dropped(vec![8], NeighDrop::TableFull)
        );
        assert_eq!(t.list().count(), 2);
    }
}
