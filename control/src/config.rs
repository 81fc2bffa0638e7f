//! The TOML configuration of `rampart run` (and optionally `rampart replay`).
//!
//! Unknown keys are errors; every error names the key it is about.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A configuration error, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// A valid file that does not make a router with the devices found (a missing MAC).
    #[error("key `{key}`: {message}")]
    Build { key: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A bump in the wire between port pairs (`[bridge]`).
    #[default]
    Bridge,
    /// A NAT gateway: ports own addresses, packets are routed (`[[route]]`, `[router]`).
    Router,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyConf {
    Forward,
    Drop,
}

impl From<PolicyConf> for dataplane::pipeline::Policy {
    fn from(p: PolicyConf) -> Self {
        match p {
            PolicyConf::Forward => dataplane::pipeline::Policy::Forward,
            PolicyConf::Drop => dataplane::pipeline::Policy::Drop,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default)]
    pub eal: EalConf,
    #[serde(rename = "port", default)]
    pub ports: Vec<PortConf>,
    #[serde(default)]
    pub bridge: BridgeConf,
    #[serde(default)]
    pub workers: WorkersConf,
    #[serde(default)]
    pub mempool: MempoolConf,
    #[serde(default)]
    pub rings: RingsConf,
    #[serde(default)]
    pub rules: RulesConf,
    #[serde(default)]
    pub management: ManagementConf,
    pub metrics: Option<MetricsConf>,
    #[serde(default)]
    pub conntrack: ConntrackConf,
    /// Router mode: static routes (`[[route]]`; `[[routes]]` is accepted too).
    #[serde(rename = "route", alias = "routes", default)]
    pub routes: Vec<crate::router_conf::RouteConf>,
    /// Router mode: permanent neighbours (`[[neighbour]]`; `[[neighbor]]` is accepted too).
    #[serde(rename = "neighbour", alias = "neighbor", default)]
    pub neighbours: Vec<crate::router_conf::NeighbourConf>,
    /// Router mode: neighbour and ICMP settings.
    #[serde(default)]
    pub router: crate::router_conf::RouterConf,
    /// NAT settings that are not rules (`[[nat.one_to_one]]`).
    #[serde(default)]
    pub nat: crate::router_conf::NatConf,
}

/// `[conntrack]`: connection tracking, with Linux's defaults (the sysctl each key mirrors is
/// named beside it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackConf {
    /// Track connections; off, every packet is judged as NEW (stateless filtering).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Connections per worker (`nf_conntrack_max`, divided among workers by the operator).
    #[serde(default = "default_ct_max")]
    pub max: u32,
    /// Bad L4 checksums are INVALID (`nf_conntrack_checksum`).
    #[serde(default = "yes")]
    pub checksum: bool,
    /// Pick up TCP connections already established (`nf_conntrack_tcp_loose`).
    #[serde(default = "yes")]
    pub tcp_loose: bool,
    /// Only out-of-window RSTs are INVALID (`nf_conntrack_tcp_be_liberal`).
    #[serde(default)]
    pub tcp_be_liberal: bool,
    /// Accept RSTs below the last ACK (`nf_conntrack_tcp_ignore_invalid_rst`).
    #[serde(default)]
    pub tcp_ignore_invalid_rst: bool,
    /// Identical retransmissions before the shorter timeout (`nf_conntrack_tcp_max_retrans`).
    #[serde(default = "default_max_retrans")]
    pub tcp_max_retrans: u8,
    /// IP datagrams being reassembled at once, per worker (default: max / 64, 256 to 65536).
    pub frag_datagrams: Option<u32>,
    /// Fragments held at most per worker while their datagrams are incomplete (default
    /// 1024; each is an mbuf of the pool). At the bound the oldest datagram is given up.
    pub frag_held_fragments: Option<u32>,
    /// Bytes of held fragments per worker at most (default 4 MiB, Linux's
    /// `ipfrag_high_thresh`).
    pub frag_held_bytes: Option<u64>,
    /// Reserve room for NAT bindings (54 bytes per entry); without it a rule set with a nat
    /// table is refused (default: on).
    #[serde(default = "yes")]
    pub nat: bool,
    /// Which pages the tables take: "transparent" (default: transparent huge pages, else small
    /// pages; leaves the reserved pool to DPDK, whose heap may grow after start-up), "auto"
    /// (the reserved huge page pool first) or "off".
    #[serde(default)]
    pub hugepages: HugePagesConf,
    #[serde(default)]
    pub timeouts: TimeoutsConf,
}

/// `[conntrack] hugepages`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HugePagesConf {
    Auto,
    #[default]
    Transparent,
    Off,
}

impl HugePagesConf {
    pub fn policy(self) -> dataplane::dpdk::HugePages {
        match self {
            HugePagesConf::Auto => dataplane::dpdk::HugePages::Auto,
            HugePagesConf::Transparent => dataplane::dpdk::HugePages::Transparent,
            HugePagesConf::Off => dataplane::dpdk::HugePages::Off,
        }
    }
}

fn default_ct_max() -> u32 {
    262_144
}
fn default_max_retrans() -> u8 {
    3
}

impl Default for ConntrackConf {
    fn default() -> Self {
        ConntrackConf {
            enabled: true,
            max: default_ct_max(),
            checksum: true,
            tcp_loose: true,
            tcp_be_liberal: false,
            tcp_ignore_invalid_rst: false,
            tcp_max_retrans: default_max_retrans(),
            frag_datagrams: None,
            frag_held_fragments: None,
            frag_held_bytes: None,
            nat: true,
            hugepages: HugePagesConf::Transparent,
            timeouts: TimeoutsConf::default(),
        }
    }
}

/// `[conntrack.timeouts]`, in seconds; an absent key keeps Linux's default
/// (`nf_conntrack_<proto>_timeout_<state>`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConf {
    pub tcp_syn_sent: Option<u64>,
    pub tcp_syn_recv: Option<u64>,
    pub tcp_established: Option<u64>,
    pub tcp_fin_wait: Option<u64>,
    pub tcp_close_wait: Option<u64>,
    pub tcp_last_ack: Option<u64>,
    pub tcp_time_wait: Option<u64>,
    pub tcp_close: Option<u64>,
    pub tcp_max_retrans: Option<u64>,
    pub tcp_unacknowledged: Option<u64>,
    pub udp: Option<u64>,
    pub udp_stream: Option<u64>,
    pub icmp: Option<u64>,
    pub icmpv6: Option<u64>,
    pub generic: Option<u64>,
    /// How long fragments of a datagram are awaited (`ipfrag_time`).
    pub frag: Option<u64>,
}

impl TimeoutsConf {
    /// The timeouts given, by key.
    fn listed(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("tcp_syn_sent", self.tcp_syn_sent),
            ("tcp_syn_recv", self.tcp_syn_recv),
            ("tcp_established", self.tcp_established),
            ("tcp_fin_wait", self.tcp_fin_wait),
            ("tcp_close_wait", self.tcp_close_wait),
            ("tcp_last_ack", self.tcp_last_ack),
            ("tcp_time_wait", self.tcp_time_wait),
            ("tcp_close", self.tcp_close),
            ("tcp_max_retrans", self.tcp_max_retrans),
            ("tcp_unacknowledged", self.tcp_unacknowledged),
            ("udp", self.udp),
            ("udp_stream", self.udp_stream),
            ("icmp", self.icmp),
            ("icmpv6", self.icmpv6),
            ("generic", self.generic),
            ("frag", self.frag),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
    }
}

impl ConntrackConf {
    /// The dataplane's settings, with `hash_seed` for the table's hash.
    pub fn track_config(&self, hash_seed: u64) -> dataplane::track::TrackConfig {
        use dataplane::conntrack::tcp::TcpState;
        const SEC: u64 = 1_000_000_000;
        let mut t = dataplane::track::TrackConfig::new(self.max);
        t.conntrack.nat = self.nat;
        t.conntrack.hugepages = self.hugepages.policy();
        t.nat_seed = hash_seed.rotate_left(17) ^ 0x6e61_7420_7365_6564;
        if let Some(n) = self.frag_datagrams {
            t.frag_datagrams = n;
        }
        if let Some(n) = self.frag_held_fragments {
            t.frag_held_fragments = n;
        }
        if let Some(n) = self.frag_held_bytes {
            t.frag_held_bytes = n;
        }
        let c = &mut t.conntrack;
        c.hash_seed = hash_seed;
        c.checksum = self.checksum;
        c.tcp.loose = self.tcp_loose;
        c.tcp.be_liberal = self.tcp_be_liberal;
        c.tcp.ignore_invalid_rst = self.tcp_ignore_invalid_rst;
        c.tcp.max_retrans = self.tcp_max_retrans;
        let o = &self.timeouts;
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(s) = v {
                *slot = s.saturating_mul(SEC);
            }
        };
        let st = &mut c.tcp.timeouts.state_ns;
        for (state, v) in [
            (TcpState::SynSent, o.tcp_syn_sent),
            (TcpState::SynSent2, o.tcp_syn_sent),
            (TcpState::SynRecv, o.tcp_syn_recv),
            (TcpState::Established, o.tcp_established),
            (TcpState::FinWait, o.tcp_fin_wait),
            (TcpState::CloseWait, o.tcp_close_wait),
            (TcpState::LastAck, o.tcp_last_ack),
            (TcpState::TimeWait, o.tcp_time_wait),
            (TcpState::Close, o.tcp_close),
        ] {
            set(&mut st[state as usize], v);
        }
        set(&mut c.tcp.timeouts.retrans_ns, o.tcp_max_retrans);
        set(&mut c.tcp.timeouts.unack_ns, o.tcp_unacknowledged);
        set(&mut c.udp_ns, o.udp);
        set(&mut c.udp_stream_ns, o.udp_stream);
        set(&mut c.icmp_ns, o.icmp);
        set(&mut c.icmpv6_ns, o.icmpv6);
        set(&mut c.generic_ns, o.generic);
        set(&mut t.frag_timeout_ns, o.frag);
        t
    }
}

/// `[rules]`: the rule files loaded at start and on SIGHUP. Relative paths are taken from the
/// current directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConf {
    /// iptables-save rules (IPv4).
    pub ipv4: Option<PathBuf>,
    /// ip6tables-save rules (IPv6).
    pub ipv6: Option<PathBuf>,
    /// Security groups (both families).
    pub groups: Option<PathBuf>,
    /// ipset sets (`ipset save` output) the iptables files' `-m set` names.
    #[serde(default)]
    pub ipsets: Option<PathBuf>,
    /// The classifier: "tree" (default), "rte_acl" (DPDK's, rebuilt on every change) or
    /// "linear" (the reference scan, for tests).
    #[serde(default)]
    pub classifier: ClassifierKind,
}

/// Which classifier rule sets use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierKind {
    #[default]
    Tree,
    RteAcl,
    Linear,
}

/// `[management]`: the Unix socket `rampart ctl` talks to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConf {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// File mode of the socket, as an octal string (default "0600").
    #[serde(default = "default_socket_mode")]
    pub mode: String,
}

/// The socket `rampart run` and `rampart ctl` use by default.
pub const DEFAULT_SOCKET: &str = "/run/rampart.sock";

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_socket_mode() -> String {
    "0600".into()
}

impl Default for ManagementConf {
    fn default() -> Self {
        ManagementConf {
            socket: default_socket(),
            mode: default_socket_mode(),
        }
    }
}

impl ManagementConf {
    /// The socket's file mode.
    pub fn mode_bits(&self) -> Option<u32> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
    }
}

/// `[metrics]`: the Prometheus endpoint (absent: no endpoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConf {
    /// Address to listen on (default loopback, port 9108).
    #[serde(default = "default_metrics")]
    pub listen: std::net::SocketAddr,
}

fn default_metrics() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9108))
}

fn default_mode() -> Mode {
    Mode::Bridge
}

/// `[eal]`: arguments handed to `rte_eal_init` before the ports' device arguments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConf {
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[[port]]`: one DPDK port, by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConf {
    /// The name rules and pairs refer to (`-i`/`-o` in iptables rules).
    pub name: String,
    /// A virtual device (`net_pcap0,rx_pcap=in.pcap`, added as `--vdev`) or a PCI address
    /// (`0000:03:00.0`, added as `-a`).
    pub device: String,
    #[serde(default = "yes")]
    pub promiscuous: bool,
    /// Router mode: the port's addresses with their prefix lengths (`"192.0.2.1/24"`,
    /// `"2001:db8::1/64"`); the first of each family is the primary one.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Router mode: the IP MTU (default 1500).
    pub mtu: Option<u32>,
    /// Router mode: the port's MAC address (default: the device's).
    pub mac: Option<String>,
    /// Let the device check received TCP/UDP checksums where it can (RX checksum offload), so
    /// conntrack does not sum packets the device found good (default: on).
    #[serde(default = "yes")]
    pub rx_checksum_offload: bool,
}

fn yes() -> bool {
    true
}

/// `[bridge]`: bump-in-the-wire mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConf {
    /// Port pairs by name: what enters one leaves by the other.
    #[serde(default)]
    pub pairs: Vec<[String; 2]>,
    /// ARP frames (default: forward).
    #[serde(default = "forward")]
    pub arp: PolicyConf,
    /// Frames that are neither IP nor ARP (default: drop).
    #[serde(default = "drop_policy")]
    pub non_ip: PolicyConf,
    /// The bridge's name in rule sets written for a Linux bridge with br_netfilter: `-i`/`-o`
    /// with it match every port, as Linux shows a bridged packet with the bridge as its
    /// interfaces (`-m physdev` names the ports).
    #[serde(default)]
    pub name: Option<String>,
}

fn forward() -> PolicyConf {
    PolicyConf::Forward
}
fn drop_policy() -> PolicyConf {
    PolicyConf::Drop
}

impl Default for BridgeConf {
    fn default() -> Self {
        BridgeConf {
            pairs: Vec::new(),
            arp: forward(),
            non_ip: drop_policy(),
            name: None,
        }
    }
}

/// `[workers]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConf {
    /// Number of worker lcores (each polls its own queue on every port).
    #[serde(default = "one")]
    pub count: usize,
    /// Lcore ids for the workers; default: the first `count` worker lcores the EAL enabled.
    #[serde(default)]
    pub lcores: Vec<u32>,
    /// TX buffers are flushed at least this often.
    #[serde(default = "default_drain_us")]
    pub drain_us: u64,
    /// Packets each hand-off ring between two workers holds (with connection tracking and more
    /// than one worker, a packet whose connection another worker owns goes to it this way).
    #[serde(default = "default_handoff_ring")]
    pub handoff_ring: u32,
}

fn default_handoff_ring() -> u32 {
    1024
}

fn one() -> usize {
    1
}
fn default_drain_us() -> u64 {
    100
}

impl Default for WorkersConf {
    fn default() -> Self {
        WorkersConf {
            count: 1,
            lcores: Vec::new(),
            drain_us: default_drain_us(),
            handoff_ring: default_handoff_ring(),
        }
    }
}

/// `[mempool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolConf {
    #[serde(default = "default_mbufs")]
    pub mbufs: u32,
    #[serde(default = "default_cache")]
    pub cache: u32,
    /// Buffer size including DPDK's 128-byte headroom.
    #[serde(default = "default_data_room")]
    pub data_room: u16,
}

fn default_mbufs() -> u32 {
    16383
}
fn default_cache() -> u32 {
    256
}
fn default_data_room() -> u16 {
    2176
}

impl Default for MempoolConf {
    fn default() -> Self {
        MempoolConf {
            mbufs: default_mbufs(),
            cache: default_cache(),
            data_room: default_data_room(),
        }
    }
}

/// `[rings]`: descriptor ring sizes per queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingsConf {
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
}

fn default_desc() -> u16 {
    1024
}

impl Default for RingsConf {
    fn default() -> Self {
        RingsConf {
            rx_desc: default_desc(),
            tx_desc: default_desc(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates configuration text; `path` is for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    pub(crate) fn invalid(
        path: &Path,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: path.into(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        use dataplane::pipeline::MAX_PORTS;
        if self.ports.len() > MAX_PORTS {
            return Err(Self::invalid(
                path,
                "port",
                format!("at most {MAX_PORTS} ports"),
            ));
        }
        for (i, p) in self.ports.iter().enumerate() {
            let key = format!("port[{i}]");
            if p.name.is_empty()
                || p.name.len() > 15
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(Self::invalid(path, format!("{key}.name"), format!("{:?}: 1 to 15 characters of A-Z a-z 0-9 - _ . (like a Linux interface name)", p.name)));
            }
            if p.device.trim().is_empty() {
                return Err(Self::invalid(path, format!("{key}.device"), "empty"));
            }
            if self.ports[..i].iter().any(|q| q.name == p.name) {
                return Err(Self::invalid(
                    path,
                    format!("{key}.name"),
                    format!("{:?} is used twice", p.name),
                ));
            }
            let dev = p.device_name();
            if self.ports[..i].iter().any(|q| q.device_name() == dev) {
                return Err(Self::invalid(
                    path,
                    format!("{key}.device"),
                    format!("device {dev:?} is used twice"),
                ));
            }
        }
        if let Some(name) = &self.bridge.name {
            let bad = if name.is_empty() || name.chars().count() > 15 {
                Some("must be 1-15 characters, like a Linux interface name".to_string())
            } else if name.ends_with('+') || name.contains(['/', ' ', '\t']) {
                Some(format!("{name:?} is not an interface name"))
            } else if self.port_index(name).is_some() {
                Some(format!("{name:?} is a port's name"))
            } else if name == "lo" {
                Some("\"lo\" is the loopback interface's name".to_string())
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(Self::invalid(path, "bridge.name", why));
            }
        }
        let mut paired = vec![false; self.ports.len()];
        for (i, pair) in self.bridge.pairs.iter().enumerate() {
            for name in pair {
                let Some(idx) = self.port_index(name) else {
                    return Err(Self::invalid(
                        path,
                        format!("bridge.pairs[{i}]"),
                        format!("no port named {name:?}"),
                    ));
                };
                if std::mem::replace(&mut paired[idx], true) {
                    return Err(Self::invalid(
                        path,
                        format!("bridge.pairs[{i}]"),
                        format!("port {name:?} is in more than one pair"),
                    ));
                }
            }
        }
        if self.workers.count == 0 || self.workers.count > 64 {
            return Err(Self::invalid(path, "workers.count", "must be 1 to 64"));
        }
        if !self.workers.lcores.is_empty() && self.workers.lcores.len() != self.workers.count {
            return Err(Self::invalid(
                path,
                "workers.lcores",
                format!(
                    "{} lcores listed for {} workers",
                    self.workers.lcores.len(),
                    self.workers.count
                ),
            ));
        }
        if self.workers.drain_us == 0 || self.workers.drain_us > 1_000_000 {
            return Err(Self::invalid(
                path,
                "workers.drain_us",
                "must be 1 to 1000000",
            ));
        }
        let need = (self.ports.len() * self.workers.count) as u32
            * (u32::from(self.rings.rx_desc) + dataplane::dpdk::MAX_BURST as u32 * 2)
            + self.workers.count as u32 * self.mempool.cache;
        if self.mempool.mbufs < need {
            return Err(Self::invalid(
                path,
                "mempool.mbufs",
                format!(
                    "{} is too few: RX rings, bursts and caches need at least {need}",
                    self.mempool.mbufs
                ),
            ));
        }
        if self.mempool.cache > 512 {
            return Err(Self::invalid(
                path,
                "mempool.cache",
                "at most 512 (RTE_MEMPOOL_CACHE_MAX_SIZE)",
            ));
        }
        if self.mempool.data_room < 128 + 64 {
            return Err(Self::invalid(
                path,
                "mempool.data_room",
                "must hold the 128-byte headroom and a minimum frame",
            ));
        }
        if self.workers.handoff_ring < 64 || self.workers.handoff_ring > 1 << 20 {
            return Err(Self::invalid(
                path,
                "workers.handoff_ring",
                "must be 64 to 1048576",
            ));
        }
        if self.conntrack.max == 0 || self.conntrack.max > 1 << 28 {
            return Err(Self::invalid(
                path,
                "conntrack.max",
                "must be 1 to 268435456",
            ));
        }
        if let Some(n) = self.conntrack.frag_datagrams {
            if n == 0 || n > 1 << 20 {
                return Err(Self::invalid(
                    path,
                    "conntrack.frag_datagrams",
                    "must be 1 to 1048576",
                ));
            }
        }
        if let Some(n) = self.conntrack.frag_held_fragments {
            if n > 1 << 20 {
                return Err(Self::invalid(
                    path,
                    "conntrack.frag_held_fragments",
                    "must be 0 to 1048576",
                ));
            }
        }
        if let Some(n) = self.conntrack.frag_held_bytes {
            if n > 1 << 32 {
                return Err(Self::invalid(
                    path,
                    "conntrack.frag_held_bytes",
                    "must be 0 to 4294967296",
                ));
            }
        }
        for (key, v) in self.conntrack.timeouts.listed() {
            if v == 0 || v > 100 * 365 * 24 * 3600 {
                return Err(Self::invalid(
                    path,
                    format!("conntrack.timeouts.{key}"),
                    "must be 1 second to 100 years",
                ));
            }
        }
        for (key, v) in [
            ("rings.rx_desc", self.rings.rx_desc),
            ("rings.tx_desc", self.rings.tx_desc),
        ] {
            if v < 32 || !v.is_power_of_two() {
                return Err(Self::invalid(
                    path,
                    key,
                    "must be a power of two, at least 32",
                ));
            }
        }
        self.validate_router(path)
    }

    /// The index of the port named `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    /// Bridge pairs as port indexes.
    pub fn pair_indexes(&self) -> Vec<(u16, u16)> {
        self.bridge
            .pairs
            .iter()
            .filter_map(|[a, b]| Some((self.port_index(a)? as u16, self.port_index(b)? as u16)))
            .collect()
    }

    /// The pipeline this configuration describes.
    pub fn bridge(&self) -> dataplane::pipeline::Bridge {
        dataplane::pipeline::Bridge::new(
            &self.pair_indexes(),
            self.bridge.arp.into(),
            self.bridge.non_ip.into(),
        )
    }

    /// EAL arguments: program name, `[eal] args`, then each port's device, then `extra`.
    pub fn eal_args(&self, extra: &[String]) -> Vec<String> {
        let mut args = vec!["rampart".to_string()];
        args.extend(self.eal.args.iter().cloned());
        for p in &self.ports {
            if p.is_virtual() {
                args.push("--vdev".into());
            } else {
                args.push("-a".into());
            }
            args.push(p.device.clone());
        }
        args.extend(extra.iter().cloned());
        args
    }
}

impl PortConf {
    /// The DPDK device name: the device string up to its first comma.
    pub fn device_name(&self) -> &str {
        self.device.split(',').next().unwrap_or(&self.device).trim()
    }

    /// Router mode: the IP MTU.
    pub fn mtu(&self) -> u32 {
        self.mtu.unwrap_or(dataplane::router::DEFAULT_MTU)
    }

    /// Virtual devices are named after their driver (`net_pcap0`, `net_af_packet1`, ...).
    pub fn is_virtual(&self) -> bool {
        self.device_name().starts_with("net_") || self.device_name().starts_with("eth_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), text)
    }

    const GOOD: &str = r#"
[eal]
args = ["--no-huge", "-m", "256"]
[[port]]
name = "inside"
device = "net_pcap0,rx_pcap=a.pcap,tx_pcap=b.pcap"
[[port]]
name = "outside"
device = "0000:03:00.0"
[bridge]
pairs = [["inside", "outside"]]
"#;

    #[test]
    fn good_config_and_eal_args() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.pair_indexes(), vec![(0, 1)]);
        assert_eq!(
            c.eal_args(&["-l".into(), "0-1".into()]),
            [
                "rampart",
                "--no-huge",
                "-m",
                "256",
                "--vdev",
                "net_pcap0,rx_pcap=a.pcap,tx_pcap=b.pcap",
                "-a",
                "0000:03:00.0",
                "-l",
                "0-1"
            ]
        );
        assert_eq!(c.workers.count, 1);
        assert_eq!(c.bridge.non_ip, PolicyConf::Drop);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse(&GOOD.replace("[bridge]", "[bridge]\nbogus = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = parse(&GOOD.replace(r#"["inside", "outside"]"#, r#"["inside", "nope"]"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bridge.pairs[0]") && e.contains("nope"), "{e}");
        // The bridge's name (`-i br0` in rule sets written for br_netfilter).
        let named = |n: &str| parse(&GOOD.replace("[bridge]", &format!("[bridge]\nname = {n:?}")));
        assert_eq!(named("br0").unwrap().bridge.name.as_deref(), Some("br0"));
        for bad in ["", "inside", "br+", "lo", "a-very-long-bridge"] {
            let e = named(bad).unwrap_err().to_string();
            assert!(e.contains("bridge.name"), "{bad}: {e}");
        }
        let e = parse(&format!("{GOOD}\n[workers]\ncount = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("workers.count"), "{e}");
        let e = parse(&format!("{GOOD}\n[rings]\nrx_desc = 100\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rings.rx_desc"), "{e}");
        let e = parse(&format!("{GOOD}\n[mempool]\nmbufs = 10\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mempool.mbufs"), "{e}");
        let e = parse(&GOOD.replace("name = \"outside\"", "name = \"inside\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("port[1].name"), "{e}");
        let e = parse("mode = \"hub\"").unwrap_err().to_string();
        assert!(e.contains("mode") || e.contains("hub"), "{e}");
    }

    #[test]
    fn conntrack_hugepages() {
        use dataplane::dpdk::HugePages;
        let c = parse(GOOD).unwrap();
        assert_eq!(
            c.conntrack.track_config(1).conntrack.hugepages,
            HugePages::Transparent
        );
        for (v, want) in [
            ("auto", HugePages::Auto),
            ("transparent", HugePages::Transparent),
            ("off", HugePages::Off),
        ] {
            let c = parse(&format!("{GOOD}\n[conntrack]\nhugepages = \"{v}\"\n")).unwrap();
            assert_eq!(c.conntrack.track_config(1).conntrack.hugepages, want);
        }
        let e = parse(&format!("{GOOD}\n[conntrack]\nhugepages = \"always\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hugepages") || e.contains("always"), "{e}");
    }
}
