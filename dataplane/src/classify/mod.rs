//! Rule sets and their classifiers.
//!
//! A rule set is a flat, priority-ordered list of [`FlatRule`]s (index 0 first): 5-tuple ranges
//! plus interface, conntrack-state, TCP-flag and fragment conditions, each with an [`Action`].
//! The rule languages (iptables-save, security groups) compile into it in `control`; chain
//! traversal is already flattened: user chains are inlined, `RETURN` becomes
//! [`Action::ContinueAt`] and non-terminal targets (LOG) continue with the next rule.
//!
//! Evaluation ([`RuleSet::evaluate`]) asks a classifier for the first rule at or after an index
//! that matches, acts on it, and continues from where a non-terminal action says. Every rule set
//! ends with its chain policy as a catch-all, so evaluation always ends in a verdict.

pub mod checks;
pub mod classbench;
pub mod connlimit;
pub mod connmark;
pub mod ctmatch;
mod cuts;
mod edits;
pub mod hashlimit;
pub mod ipset;
pub mod ipv6ext;
mod linear;
pub mod nfacct;
pub mod payload;
pub mod recent;
pub mod rpfilter;
pub mod string;
pub mod time;
pub mod tree;
pub mod u32_match;
pub mod update;
pub mod walk;

pub use checks::{Check, Wire};
pub use linear::Linear;
pub use tree::{Tree, TreeConfig};
pub use update::{Updatable, UpdateError};

use crate::wire::{Family, FlowKey, IpAddr128};

/// Conntrack states as bits, for `-m conntrack --ctstate` / `-m state --state`.
///
/// A packet has exactly one bit: its state, and for a connection whose destination was
/// translated (Linux's `IPS_DST_NAT`, what `--ctstate DNAT` tests) the state's `_DNAT` twin
/// ([`dnat`]). A rule's mask for a state holds both twins ([`states`]); `--ctstate DNAT` is
/// [`DNAT`]. INVALID and UNTRACKED packets have no connection, so no twin.
pub mod ct {
    pub const NEW: u8 = 1 << 0;
    pub const ESTABLISHED: u8 = 1 << 1;
    pub const RELATED: u8 = 1 << 2;
    pub const INVALID: u8 = 1 << 3;
    pub const UNTRACKED: u8 = 1 << 4;
    pub const NEW_DNAT: u8 = NEW << 5;
    pub const ESTABLISHED_DNAT: u8 = ESTABLISHED << 5;
    pub const RELATED_DNAT: u8 = RELATED << 5;
    /// `--ctstate DNAT`: every state of a connection whose destination was translated.
    pub const DNAT: u8 = NEW_DNAT | ESTABLISHED_DNAT | RELATED_DNAT;
    /// Any state (no state match).
    pub const ANY: u8 = 0xff;

    /// A rule's mask for the plain states in `mask`: each with its `_DNAT` twin, so that
    /// `--ctstate NEW` matches every NEW packet, translated or not.
    #[inline]
    pub const fn states(mask: u8) -> u8 {
        mask | ((mask & (NEW | ESTABLISHED | RELATED)) << 5)
    }

    /// The bit of a packet in state `bit` (a plain state) of a connection whose destination
    /// was translated.
    #[inline]
    pub const fn dnat(bit: u8) -> u8 {
        if bit & (NEW | ESTABLISHED | RELATED) != 0 {
            bit << 5
        } else {
            bit
        }
    }
}

/// A bit per port index (ports are at most [`crate::pipeline::MAX_PORTS`] = 32).
pub type PortMask = u32;
/// Every port.
pub const ANY_PORT: PortMask = u32::MAX;

/// How a rule treats IP fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragMatch {
    /// Any packet.
    Any,
    /// Only non-first fragments (iptables `-f`).
    LaterOnly,
    /// Not non-first fragments (`! -f`, and implied by any L4 match: ports, ICMP types and TCP
    /// flags are unknown in a non-first fragment, so Linux never matches those there).
    NotLater,
}

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Drop,
    Reject(RejectWith),
    /// Emit a log record (index into [`RuleSet::logs`]) and continue with the next rule.
    Log(u32),
    /// `RETURN` from an inlined chain: continue evaluation at this rule index.
    ContinueAt(u32),
    /// `NOTRACK` / `CT --notrack` (raw table): the packet will not be tracked; continue with
    /// the next rule, as the kernel's target does.
    NoTrack,
    /// `CT --zone`/`--zone-orig`/`--zone-reply` (raw table): the packet's conntrack template
    /// ([`crate::conntrack::zones::template`]), when it has none yet; continue with the next
    /// rule, as the kernel's target does.
    Ct(u32),
    /// `MARK`: change the walk's mark by the rule's [`Check::SetMark`] and continue with the
    /// next rule ([`walk`]).
    Mark,
    /// A mangle edit (TCPMSS, TOS, DSCP, TTL, HL), as [`crate::mangle::Edit::encode`] makes
    /// it; only mangle chains have it, walked by [`RuleSet::walk_edits`], which applies it and
    /// continues with the next rule.
    Edit(u32),
}

/// `REJECT --reject-with`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectWith {
    TcpReset,
    IcmpNetUnreachable,
    IcmpHostUnreachable,
    IcmpPortUnreachable,
    IcmpProtoUnreachable,
    IcmpNetProhibited,
    IcmpHostProhibited,
    IcmpAdminProhibited,
    Icmp6NoRoute,
    Icmp6AdmProhibited,
    Icmp6AddrUnreachable,
    Icmp6PortUnreachable,
}

/// A `LOG` (or `NFLOG`) target's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogSpec {
    pub prefix: String,
    /// Syslog level 0 (emerg) to 7 (debug); iptables' default is 4 (warning).
    pub level: u8,
    /// NFLOG's `--nflog-group` (`None`: a LOG rule). An NFLOG rule is a LOG rule whose
    /// records name the group.
    pub group: Option<u16>,
}

impl LogSpec {
    /// What a record starts with before `IN=`: the prefix, and an NFLOG rule's group.
    pub fn lead(&self) -> String {
        match self.group {
            None => self.prefix.clone(),
            Some(g) => format!("{}GROUP={g} ", self.prefix),
        }
    }
}

/// One flat rule: every condition must hold. Ranges are inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlatRule {
    pub family: Family,
    pub src: (IpAddr128, IpAddr128),
    pub dst: (IpAddr128, IpAddr128),
    pub proto: (u8, u8),
    /// TCP/UDP source port; for ICMP the [`FlowKey`] meaning (identifier).
    pub sport: (u16, u16),
    /// TCP/UDP destination port; for ICMP/ICMPv6 `(type << 8) | code`.
    pub dport: (u16, u16),
    pub in_ports: PortMask,
    pub out_ports: PortMask,
    pub ct_states: u8,
    /// `(mask, value)`: matches TCP packets whose `flags & mask == value`.
    pub tcp_flags: Option<(u8, u8)>,
    pub frag: FragMatch,
    pub action: Action,
    /// Index into [`RuleSet::origins`]: where the rule came from (several flat rules may share one).
    pub origin: u32,
    /// Conditions the fields above do not hold, all of which must hold too ([`checks`]):
    /// checked by [`RuleSet::judge`] after a classifier finds the rule, never by
    /// [`FlatRule::matches`]. `None` for most rules.
    pub checks: Option<std::sync::Arc<Vec<Check>>>,
}

impl FlatRule {
    /// A rule matching every packet of `family`.
    pub fn any(family: Family, action: Action, origin: u32) -> FlatRule {
        let (lo, hi) = match family {
            Family::V4 => (
                IpAddr128::from_v4_octets([0; 4]),
                IpAddr128::from_v4_octets([255; 4]),
            ),
            Family::V6 => (IpAddr128([0; 16]), IpAddr128([0xff; 16])),
        };
        FlatRule {
            family,
            src: (lo, hi),
            dst: (lo, hi),
            proto: (0, 255),
            sport: (0, u16::MAX),
            dport: (0, u16::MAX),
            in_ports: ANY_PORT,
            out_ports: ANY_PORT,
            ct_states: ct::ANY,
            tcp_flags: None,
            frag: FragMatch::Any,
            action,
            origin,
            checks: None,
        }
    }

    /// True when the rule's fields match `p` (the reference semantics every classifier must
    /// agree with; [`FlatRule::checks`] are the rule set's to check afterwards).
    #[inline]
    pub fn matches(&self, p: &PacketMeta) -> bool {
        let k = &p.key;
        k.family == self.family
            && in_range(k.src, self.src)
            && in_range(k.dst, self.dst)
            && in_range(k.proto, self.proto)
            && in_range(k.src_port, self.sport)
            && in_range(k.dst_port, self.dport)
            && self.in_ports & (1 << (p.in_port & 31)) != 0
            && self.out_ports & (1 << (p.out_port & 31)) != 0
            && self.ct_states & p.ct_state != 0
            && match self.tcp_flags {
                None => true,
                Some((mask, value)) => {
                    k.proto == crate::wire::ip_proto::TCP
                        && !p.later_fragment
                        && p.tcp_flags & mask == value
                }
            }
            && match self.frag {
                FragMatch::Any => true,
                FragMatch::LaterOnly => p.later_fragment,
                FragMatch::NotLater => !p.later_fragment,
            }
    }
}

#[inline(always)]
fn in_range<T: PartialOrd>(v: T, (lo, hi): (T, T)) -> bool {
    lo <= v && v <= hi
}

/// What classification looks at for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    pub key: FlowKey,
    pub in_port: u8,
    pub out_port: u8,
    /// One of the [`ct`] bits.
    pub ct_state: u8,
    pub tcp_flags: u8,
    /// A non-first fragment (no L4 header).
    pub later_fragment: bool,
}

/// Where a rule came from, for verdict logs and `rules show`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The rule file.
    pub file: String,
    /// 1-based line in the file (0 for a chain policy or a generated rule).
    pub line: u32,
    /// A short description (`FORWARD:3`, `policy FORWARD DROP`, `sg web ingress 1`).
    pub label: String,
}

/// A first-match classifier over a rule set's flat rules.
pub trait Classifier: Send + Sync {
    /// For each packet, the index of the first rule at or after `from[i]` that matches, or
    /// `u32::MAX` when none does. `out` has the length of `pkts`.
    fn classify(&self, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32], out: &mut [u32]);

    /// [`Classifier::classify`] for one packet: what a chain traversal ([`RuleSet::evaluate`])
    /// asks, once per step. Classifiers with a cheaper single-key path than a burst of one
    /// (no burst set-up) give it here.
    #[inline]
    fn first_match(&self, rules: &[FlatRule], p: &PacketMeta, from: u32) -> u32 {
        let mut out = [u32::MAX];
        self.classify(rules, std::slice::from_ref(p), &[from], &mut out);
        out[0]
    }
}

/// A compiled, immutable rule set for one family.
pub struct RuleSet {
    pub family: Family,
    pub rules: Vec<FlatRule>,
    /// Shared: a reload whose rules keep their origins (lines, chain positions) reuses them.
    pub origins: std::sync::Arc<Vec<Origin>>,
    pub logs: Vec<LogSpec>,
    classifier: Box<dyn Classifier>,
    /// Unique per rule set built in this process: what conntrack's cached verdicts are keyed by
    /// (a swap brings a new epoch, so cached verdicts of the old set are never used).
    pub epoch: u32,
    /// Whether the verdict for the packets of one connection in one direction, in one state,
    /// from one port, is always the same: no rule looks at TCP flags or has [`checks`] (the
    /// per-packet conditions besides those) other than the connection matches that read
    /// what an established connection keeps ([`Check::per_packet`]).
    pub cacheable: bool,
    /// Whether a rule reads the packet's connection ([`Wire::conn`]: `-m conntrack`'s
    /// options besides `--ctstate`, `-m connbytes`); the judging paths make the connection's
    /// view for such rule sets only.
    pub reads_conn: bool,
    /// Whether a rule counts connections (`-m connlimit`, [`connlimit`]; such a rule set also
    /// [`RuleSet::reads_conn`]): the judging path gives the walk the connection's counts.
    pub counts_conns: bool,
    /// Whether a rule reads or changes the connection's mark (`-m connmark`, CONNMARK): the
    /// tracked path then loads it for the walk and stores it back ([`connmark`]).
    pub conn_marks: bool,
    /// Whether a rule reads the packet's payload (`-m string`, [`string`]; `-m u32`,
    /// [`u32_match`]): a datagram that came in fragments is gathered whole for it ([`payload`]).
    pub reads_payload: bool,
    /// The `-m limit` buckets of the rules' [`Check::Limit`]s, by slot.
    pub buckets: Box<[checks::Bucket]>,
}

/// The next [`RuleSet::epoch`] (0 is never given).
static NEXT_EPOCH: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("family", &self.family)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// The outcome of evaluating a rule set for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The terminal rule's action (Accept, Drop or Reject).
    pub action: Action,
    /// The terminal rule's index.
    pub rule: u32,
    /// The conntrack template the first NOTRACK or CT rule passed on the way left
    /// ([`crate::conntrack::zones`]: 0 when none was passed; later ones change nothing, as
    /// in Linux).
    pub ct: u32,
}

/// What a rule's checks say of a packet: they hold, one fails, or one drops the packet (the
/// kernel's `hotdrop`: `-m hashlimit` with a new key in a full table).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    Yes,
    No,
    Drop,
}

/// How many continue steps (LOG, RETURN) one packet may take; more means a compiler bug, and the
/// packet is dropped rather than looping.
pub(crate) const MAX_STEPS: usize = 64;

impl RuleSet {
    /// A rule set over `rules` (which must end with a catch-all terminal rule) with the linear
    /// reference classifier.
    pub fn new(
        family: Family,
        rules: Vec<FlatRule>,
        origins: Vec<Origin>,
        logs: Vec<LogSpec>,
    ) -> RuleSet {
        RuleSet::with_shared_origins(family, rules, std::sync::Arc::new(origins), logs)
    }

    /// [`RuleSet::new`] with origins shared with other rule sets.
    pub fn with_shared_origins(
        family: Family,
        rules: Vec<FlatRule>,
        origins: std::sync::Arc<Vec<Origin>>,
        logs: Vec<LogSpec>,
    ) -> RuleSet {
        let cacheable = rules.iter().all(|r| {
            r.tcp_flags.is_none()
                && r.checks
                    .as_ref()
                    .is_none_or(|c| !c.iter().any(|c| c.per_packet_in(r.ct_states)))
        });
        let conn_marks = rules.iter().any(|r| {
            r.checks
                .as_ref()
                .is_some_and(|c| c.iter().any(Check::conn_marks))
        });
        let reads_conn = rules.iter().any(|r| {
            r.checks
                .as_ref()
                .is_some_and(|c| c.iter().any(Check::reads_conn))
        });
        let counts_conns = rules.iter().any(|r| {
            r.checks
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| matches!(c, Check::ConnLimit(_))))
        });
        let reads_payload = rules.iter().any(|r| {
            r.checks
                .as_ref()
                .is_some_and(|c| c.iter().any(Check::reads_payload))
        });
        let mut caps: Vec<u64> = Vec::new();
        for r in &rules {
            for c in r.checks.iter().flat_map(|c| c.iter()) {
                // A limit's bucket starts full; an nth counter at `every - packet`.
                let (slot, start) = match *c {
                    Check::Limit { slot, cap, .. } => (slot, u64::from(cap)),
                    Check::Nth { slot, .. } => (slot, u64::from(checks::nth_start(c))),
                    // A quota's counter starts at its bytes.
                    Check::Quota { slot, bytes, .. } => (slot, bytes),
                    _ => continue,
                };
                let slot = slot as usize;
                if caps.len() <= slot {
                    caps.resize(slot + 1, 0);
                }
                caps[slot] = start;
            }
        }
        RuleSet {
            family,
            rules,
            origins,
            logs,
            classifier: Box::new(Linear),
            epoch: NEXT_EPOCH
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .max(1),
            cacheable,
            reads_conn,
            counts_conns,
            conn_marks,
            reads_payload,
            buckets: caps
                .into_iter()
                .map(|c| checks::Bucket(std::sync::atomic::AtomicU64::new(c)))
                .collect(),
        }
    }

    /// Replaces the classifier.
    pub fn with_classifier(mut self, c: Box<dyn Classifier>) -> RuleSet {
        self.classifier = c;
        self
    }

    /// Judges one packet without its bytes ([`Wire::NONE`]: rules with [`checks`] that read
    /// the packet do not match); `on_log` is called for every LOG rule passed on the way.
    pub fn evaluate(
        &self,
        p: &PacketMeta,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    ) -> Judgement {
        self.judge(p, &Wire::NONE, on_log)
    }

    /// Judges one packet whose bytes are `w`; `on_log` is called for every LOG rule passed on
    /// the way. A rule whose fields match but whose [`FlatRule::checks`] do not is passed
    /// over (the walk goes on from the next rule, and that is not a step). The packet's mark
    /// is 0 ([`walk`]).
    #[inline]
    pub fn judge(
        &self,
        p: &PacketMeta,
        w: &Wire<'_>,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    ) -> Judgement {
        let mut mark = walk::Marks::default();
        self.judge_marked(p, w, &mut mark, on_log)
    }

    /// [`RuleSet::judge`] for a packet whose mark is `mark` when the walk reaches this rule
    /// set; `mark` is what it is after (MARK rules passed change it). Always inlined, as
    /// `judge` was before it: out of line it costs a new connection 17 instructions.
    #[inline(always)]
    pub fn judge_marked(
        &self,
        p: &PacketMeta,
        w: &Wire<'_>,
        mark: &mut walk::Marks,
        mut on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    ) -> Judgement {
        let mut from = 0u32;
        let mut ct = 0u32;
        for _ in 0..MAX_STEPS {
            let mut idx = self.classifier.first_match(&self.rules, p, from);
            let rule = loop {
                let Some(rule) = self.rules.get(idx as usize) else {
                    break None;
                };
                match &rule.checks {
                    Some(c) => match self.checks_hold(c, p, w, mark) {
                        Held::Yes => break Some(rule),
                        Held::No => idx = self.classifier.first_match(&self.rules, p, idx + 1),
                        Held::Drop => {
                            return Judgement {
                                action: Action::Drop,
                                rule: u32::MAX,
                                ct,
                            }
                        }
                    },
                    None => break Some(rule),
                }
            };
            let Some(rule) = rule else {
                break;
            };
            match rule.action {
                Action::Log(l) => {
                    if let Some(spec) = self.logs.get(l as usize) {
                        on_log(idx, spec, p);
                    }
                    from = idx + 1;
                }
                Action::ContinueAt(next) => from = next.max(idx + 1),
                Action::NoTrack => {
                    if ct == 0 {
                        ct = crate::conntrack::zones::TEMPLATE_NOTRACK;
                    }
                    from = idx + 1;
                }
                Action::Ct(t) => {
                    if ct == 0 {
                        ct = t;
                    }
                    from = idx + 1;
                }
                Action::Mark => {
                    if let Some(c) = &rule.checks {
                        walk::set_mark(c, mark);
                    }
                    from = idx + 1;
                }
                terminal => {
                    return Judgement {
                        action: terminal,
                        rule: idx,
                        ct,
                    }
                }
            }
        }
        Judgement {
            action: Action::Drop,
            rule: u32::MAX,
            ct,
        }
    }

    /// Whether all of a rule's checks hold (out of line: most rules have none).
    #[inline(never)]
    #[cold]
    fn checks_hold(
        &self,
        checks: &[Check],
        p: &PacketMeta,
        w: &Wire<'_>,
        mark: &walk::Marks,
    ) -> Held {
        for c in checks {
            let ok = match *c {
                Check::Mark {
                    value,
                    mask,
                    invert,
                } => walk::mark_matches(mark.packet, value, mask, invert),
                Check::ConnMark {
                    value,
                    mask,
                    invert,
                } => connmark::matches(mark, value, mask, invert),
                Check::HashLimit(ref m) => match m.held(p, w) {
                    Some(ok) => ok,
                    None => return Held::Drop,
                },
                Check::ConnLimit(ref m) => match m.held(p, w) {
                    Some(ok) => ok,
                    None => return Held::Drop,
                },
                Check::Ext(ref m) => match m.held(p, w) {
                    Some(ok) => ok,
                    None => return Held::Drop,
                },
                _ => c.holds(p, w, &self.buckets),
            };
            if !ok {
                return Held::No;
            }
        }
        Held::Yes
    }
}
