//! The parsed form of an iptables-save file: tables, chains and rules, with every value already
//! checked and normalised (addresses as ranges, names as numbers) and every rule keeping its
//! source position.
//!
//! Invariants (established by the parser and the per-table validation):
//! - Every table holds its built-in chains (declared or not), in Linux's order, then the user
//!   chains in declaration order.
//! - Every [`Target::Jump`] names a user chain of the same table, and user chains form no loop.
//! - Address ranges have the rule set's family (IPv4 stored v4-mapped) and `lo <= hi`.
//! - Port ranges have `lo <= hi`; ICMP code ranges have `lo <= hi`.

use dataplane::classify::{LogSpec, PortMask, RejectWith};
use dataplane::wire::{Family, IpAddr128};

/// A whole rules file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRules {
    /// The file name used in errors and origins.
    pub file: String,
    pub family: Family,
    /// In file order; each kind at most once.
    pub tables: Vec<Table>,
}

impl ParsedRules {
    /// The table of this kind, if the file has one.
    pub fn table(&self, kind: TableKind) -> Option<&Table> {
        self.tables.iter().find(|t| t.kind == kind)
    }
}

/// The netfilter tables Rampart understands. Mangle and security are parsed and validated but
/// never applied: they load only when their rules change nothing (see
/// [`TableKind::applied`]), which is what firewalld's iptables backend puts in them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TableKind {
    Filter,
    Nat,
    Raw,
    Mangle,
    Security,
}

impl TableKind {
    /// The table's name as iptables spells it.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Filter => "filter",
            TableKind::Nat => "nat",
            TableKind::Raw => "raw",
            TableKind::Mangle => "mangle",
            TableKind::Security => "security",
        }
    }

    /// Whether Rampart applies the table's rules; the others may hold only rules that change
    /// no packet and no verdict (ACCEPT, RETURN, jumps and gotos, rules without a target) and
    /// ACCEPT policies.
    pub fn applied(self) -> bool {
        matches!(self, TableKind::Filter | TableKind::Nat | TableKind::Raw)
    }

    /// From an iptables table name.
    pub fn from_name(name: &str) -> Option<TableKind> {
        match name {
            "filter" => Some(TableKind::Filter),
            "nat" => Some(TableKind::Nat),
            "raw" => Some(TableKind::Raw),
            "mangle" => Some(TableKind::Mangle),
            "security" => Some(TableKind::Security),
            _ => None,
        }
    }

    /// The built-in chains (hooks) of the table, in Linux's order.
    pub fn builtin_chains(self) -> &'static [HookPoint] {
        match self {
            TableKind::Filter => &[HookPoint::Input, HookPoint::Forward, HookPoint::Output],
            TableKind::Nat => &[
                HookPoint::Prerouting,
                HookPoint::Input,
                HookPoint::Output,
                HookPoint::Postrouting,
            ],
            TableKind::Raw => &[HookPoint::Prerouting, HookPoint::Output],
            TableKind::Mangle => &HookPoint::ALL,
            TableKind::Security => &[HookPoint::Input, HookPoint::Forward, HookPoint::Output],
        }
    }
}

/// A netfilter hook, named after its built-in chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPoint {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl HookPoint {
    pub const ALL: [HookPoint; 5] = [
        HookPoint::Prerouting,
        HookPoint::Input,
        HookPoint::Forward,
        HookPoint::Output,
        HookPoint::Postrouting,
    ];

    /// The built-in chain's name.
    pub fn chain_name(self) -> &'static str {
        match self {
            HookPoint::Prerouting => "PREROUTING",
            HookPoint::Input => "INPUT",
            HookPoint::Forward => "FORWARD",
            HookPoint::Output => "OUTPUT",
            HookPoint::Postrouting => "POSTROUTING",
        }
    }

    /// From a built-in chain name.
    pub fn from_chain_name(name: &str) -> Option<HookPoint> {
        HookPoint::ALL.into_iter().find(|h| h.chain_name() == name)
    }

    /// A bit for hook sets.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Whether a packet at this hook has an input interface (`-i` is meaningful).
    pub fn has_in_interface(self) -> bool {
        !matches!(self, HookPoint::Output | HookPoint::Postrouting)
    }

    /// Whether a packet at this hook has an output interface (`-o` is meaningful).
    pub fn has_out_interface(self) -> bool {
        !matches!(self, HookPoint::Prerouting | HookPoint::Input)
    }
}

/// One `*table` ... `COMMIT` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub kind: TableKind,
    /// Line of the `*table` header.
    pub line: u32,
    /// Line of its `COMMIT`.
    pub end: u32,
    /// Built-in chains first (Linux's order), then user chains in declaration order.
    pub chains: Vec<Chain>,
}

impl Table {
    /// The chain with this name.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The index of the chain with this name.
    pub fn chain_index(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }
}

/// A built-in chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// `[packets:bytes]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// A chain and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// The hook of a built-in chain; `None` for a user chain.
    pub hook: Option<HookPoint>,
    /// A built-in chain's policy (ACCEPT when the file does not set it); `None` for user chains.
    pub policy: Option<Policy>,
    pub counters: Option<Counters>,
    /// Line of the `:CHAIN` declaration, 0 for a built-in chain the file does not declare.
    pub line: u32,
    pub rules: Vec<Rule>,
}

/// One `-A CHAIN ...` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub line: u32,
    /// Column of the `-A`.
    pub col: u32,
    /// 1-based position in its chain, as `iptables -L --line-numbers` shows it.
    pub number: u32,
    pub counters: Option<Counters>,
    /// All must hold (in iptables, matches are a conjunction).
    pub matches: Vec<Match>,
    /// `None` for a rule without `-j`/`-g` (it only counts).
    pub target: Option<TargetSpec>,
    /// The conjunction of `matches` as disjoint cubes, computed once when the line is parsed
    /// (`None` past [`super::MAX_RULE_ALTERNATIVES`]; an error only if the rule is reached).
    pub(crate) cubes: Option<Vec<super::compile::Cube>>,
}

/// One condition of a rule, possibly negated with `!`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// Column of the option (the `!` belongs to it but is not counted).
    pub col: u32,
    pub negated: bool,
    pub cond: Cond,
}

/// An inclusive address range of the rule set's family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrRange {
    pub lo: IpAddr128,
    pub hi: IpAddr128,
}

/// An inclusive port range.
pub type PortRange = (u16, u16);

/// An `-i`/`-o` interface spec resolved against the configured ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    /// As written (`eth0`, `eth+`).
    pub name: String,
    /// Bit i set when configured port i matches the name.
    pub mask: PortMask,
}

/// Match extensions that can be loaded with `-m` (or implicitly by `-p tcp|udp|icmp|icmpv6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Multiport,
    Iprange,
    Conntrack,
    State,
    Comment,
    Ttl,
    Hl,
    Length,
    Tos,
    Dscp,
    Ecn,
    PktType,
    Mac,
    TcpMss,
    Limit,
    AddrType,
    Rt,
    Recent,
    Frag,
    Hbh,
    Dst,
    Ipv6Header,
    Ah,
    Esp,
    Mark,
    Statistic,
    ConnBytes,
    Quota,
    HashLimit,
    PhysDev,
    Time,
    Set,
    ConnLimit,
    ConnMark,
    String,
    U32,
    RpFilter,
    NfAcct,
}

impl Module {
    pub fn name(self) -> &'static str {
        match self {
            Module::Tcp => "tcp",
            Module::Udp => "udp",
            Module::Icmp => "icmp",
            Module::Icmp6 => "icmp6",
            Module::Multiport => "multiport",
            Module::Iprange => "iprange",
            Module::Conntrack => "conntrack",
            Module::State => "state",
            Module::Comment => "comment",
            Module::Ttl => "ttl",
            Module::Hl => "hl",
            Module::Length => "length",
            Module::Tos => "tos",
            Module::Dscp => "dscp",
            Module::Ecn => "ecn",
            Module::PktType => "pkttype",
            Module::Mac => "mac",
            Module::TcpMss => "tcpmss",
            Module::Limit => "limit",
            Module::AddrType => "addrtype",
            Module::Rt => "rt",
            Module::Recent => "recent",
            Module::Frag => "frag",
            Module::Hbh => "hbh",
            Module::Dst => "dst",
            Module::Ipv6Header => "ipv6header",
            Module::Ah => "ah",
            Module::Esp => "esp",
            Module::Mark => "mark",
            Module::Statistic => "statistic",
            Module::ConnBytes => "connbytes",
            Module::Quota => "quota",
            Module::HashLimit => "hashlimit",
            Module::PhysDev => "physdev",
            Module::Time => "time",
            Module::Set => "set",
            Module::ConnLimit => "connlimit",
            Module::ConnMark => "connmark",
            Module::String => "string",
            Module::U32 => "u32",
            Module::RpFilter => "rpfilter",
            Module::NfAcct => "nfacct",
        }
    }

    /// Whether the match looks at the L4 header, so that it never matches a non-first fragment
    /// (Linux's tcp, udp, icmp, icmp6 and multiport matches return false when `fragoff != 0`,
    /// negated or not).
    pub fn is_l4(self) -> bool {
        matches!(
            self,
            Module::Tcp | Module::Udp | Module::Icmp | Module::Icmp6 | Module::Multiport
        )
    }
}

/// An `--icmp-type`/`--icmpv6-type` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpMatch {
    /// `any` (ICMPv4 only; also type 255).
    Any,
    /// One type and an inclusive code range.
    Type { ty: u8, code_lo: u8, code_hi: u8 },
}

/// The conditions a rule can state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `-s`: any of the ranges (a comma list gives several; never several when negated).
    Source(Vec<AddrRange>),
    /// `-d`.
    Destination(Vec<AddrRange>),
    /// `-p`; `None` is `all`.
    Protocol(Option<u8>),
    /// `-i`.
    InInterface(Iface),
    /// `-o`.
    OutInterface(Iface),
    /// `-f`: non-first fragments.
    Fragment,
    /// A loaded match extension (`-m tcp`, or `-p tcp` followed by `--dport`); L4 modules
    /// exclude non-first fragments by themselves being there.
    Module(Module),
    /// `--sport` (one range) or `-m multiport --sports` (up to 15 ports).
    SourcePorts(Vec<PortRange>),
    /// `--dport` or `-m multiport --dports`.
    DestinationPorts(Vec<PortRange>),
    /// `-m multiport --ports`: the source or the destination port is in the list.
    Ports(Vec<PortRange>),
    /// `-m iprange --src-range`.
    SourceRange(AddrRange),
    /// `-m iprange --dst-range`.
    DestinationRange(AddrRange),
    /// `--ctstate` / `--state`: [`dataplane::classify::ct`] bits (each state with its DNAT
    /// twin), and above them `--ctstate SNAT`, which no packet has.
    ConnState(u16),
    /// `--tcp-flags MASK COMP` (`--syn` is `FIN,SYN,RST,ACK SYN`).
    TcpFlags { mask: u8, comp: u8 },
    /// `--icmp-type` (ICMPv4) or `--icmpv6-type`.
    Icmp(IcmpMatch),
    /// `-m comment --comment`: matches everything.
    Comment(String),
    /// A condition on the packet's bytes, checked after classification (ttl, hl, length, tos,
    /// dscp, ecn's IP bits, pkttype, mac, tcpmss, `--tcp-option`); its `!` is inside it (the
    /// match's `negated` is false).
    Check(dataplane::classify::Check),
    /// `-m limit`: one packet per `avg` (1/10000 s) on average, `burst` at once.
    Limit { avg: u32, burst: u32 },
    /// `-m addrtype --src-type`/`--dst-type` (negated by `!`): the address (source or
    /// destination) lies in the set of the alternative whose ports (in or out, per
    /// `--limit-iface-in/out`; all ports without one) hold the packet's.
    AddrType {
        dst: bool,
        out: bool,
        alts: Vec<(PortMask, Vec<AddrRange>)>,
    },
    /// `-m statistic`: `--mode random --probability` (iptables' `lround(p * 2^31)`) or
    /// `--mode nth --every n [--packet p]`; `!` inside (the match's `negated` is false).
    Statistic(Statistic),
    /// `-m physdev`: the bridge ports; each option's `!` inside (the match's `negated` is
    /// false). Flattened per hook into port sets or a constant.
    PhysDev(PhysDev),
}

/// `-m physdev`'s options (xt_physdev_info): each `Some` when given, with its `!`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhysDev {
    /// Bridge mode (every packet is bridged); false in router mode (none is).
    pub bridged: bool,
    /// `--physdev-in`: the ports the name matches.
    pub inp: Option<(Iface, bool)>,
    /// `--physdev-out`.
    pub out: Option<(Iface, bool)>,
    /// `--physdev-is-in`: `Some(negated)`.
    pub is_in: Option<bool>,
    /// `--physdev-is-out`.
    pub is_out: Option<bool>,
    /// `--physdev-is-bridged`.
    pub is_bridged: Option<bool>,
}

/// `-m statistic`'s options as given so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Statistic {
    /// `Some(true)` random, `Some(false)` nth.
    pub random: Option<bool>,
    pub probability: Option<u32>,
    pub every: Option<u32>,
    pub packet: Option<u32>,
    pub invert: bool,
}

/// The target of a rule and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// Column of the `-j`/`-g`.
    pub col: u32,
    /// `-g` (goto) rather than `-j`.
    pub goto: bool,
    pub target: Target,
}

/// Where NAT maps to (`--to-source`, `--to-destination`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatTo {
    /// The address range; `None` keeps the address (ports only).
    pub addrs: Option<AddrRange>,
    /// The port range; `None` keeps the port.
    pub ports: Option<PortRange>,
    pub random: bool,
    pub random_fully: bool,
    pub persistent: bool,
}

/// What a rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Accept,
    Drop,
    Return,
    Reject(RejectWith),
    Log(LogSpec),
    /// A user chain of the same table (jump or goto, per [`TargetSpec::goto`]).
    Jump(String),
    Snat(NatTo),
    Dnat(NatTo),
    Masquerade {
        ports: Option<PortRange>,
        random: bool,
        random_fully: bool,
    },
    /// `NETMAP --to PREFIX`: the prefix's first and last address.
    Netmap(AddrRange),
    /// `REDIRECT [--to-ports P[-Q]] [--random]`.
    Redirect {
        ports: Option<PortRange>,
        random: bool,
    },
    /// `NOTRACK` or `CT --notrack`.
    NoTrack,
    /// `CT` with `--zone`, `--zone-orig`, `--zone-reply` or none (raw table): the packet's
    /// conntrack template, as [`dataplane::conntrack::zones::template`] packs it.
    CtZone(u32),
    /// `MARK`: the packet's mark becomes `(mark & !mask) ^ xor` (xt_MARK v2, as every spelling
    /// is stored).
    Mark {
        mask: u32,
        xor: u32,
    },
    /// A mangle target that edits the packet: TCPMSS, DSCP, TOS, TTL, HL.
    Edit(dataplane::mangle::Edit),
    /// `CONNMARK`: the connection's mark set, saved from or restored into the packet's
    /// ([`dataplane::classify::connmark`]).
    ConnMark(dataplane::classify::connmark::Op),
}

impl Target {
    /// A nat-table target that translates (SNAT, DNAT, MASQUERADE, NETMAP, REDIRECT).
    pub fn translates(&self) -> bool {
        matches!(
            self,
            Target::Snat(_)
                | Target::Dnat(_)
                | Target::Masquerade { .. }
                | Target::Netmap(_)
                | Target::Redirect { .. }
        )
    }
}
