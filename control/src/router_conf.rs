//! Router mode's configuration: port addresses, MTU and MAC (`[[port]]`), static routes
//! (`[[route]]`), permanent neighbours (`[[neighbour]]`), neighbour and ICMP settings
//! (`[router]`), 1:1 NAT (`[[nat.one_to_one]]`);
//! their validation, and [`build_router`], which turns them into the dataplane's
//! [`Router`](dataplane::router::Router).
//!
//! Every error names its key (`route[2].via: ...`), as the rest of the configuration does.

use crate::config::{Config, ConfigError, Mode};
use dataplane::nat::OneToOne;
use dataplane::route::neigh::NeighConfig;
use dataplane::route::{NextHop, Route};
use dataplane::router::{
    IcmpLimit, IfAddr, PortL3, Router, RouterConfig, StaticNeigh, MIN_MTU_V4, MIN_MTU_V6,
};
use dataplane::wire::{Family, IpAddr128, MacAddr};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;

/// `[[route]]`: one static route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    /// The destination prefix, host bits zero (`0.0.0.0/0`, `2001:db8::/32`).
    pub prefix: String,
    /// The gateway; absent: the prefix is directly reachable on `port`.
    pub via: Option<String>,
    /// The out port by name; optional when `via` is inside a connected subnet (the port of
    /// that subnet), required for an IPv6 link-local gateway and without `via`.
    pub port: Option<String>,
}

/// `[[neighbour]]` (or `[[neighbor]]`): a permanent neighbour, as `ip neigh add ADDRESS lladdr
/// MAC dev PORT nud permanent`: used without resolution, never aged or changed by ARP/NDP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConf {
    /// The port it is on, by name.
    pub port: String,
    /// Its IPv4 or IPv6 address.
    pub address: String,
    /// Its MAC address (`02:00:00:00:00:01`).
    pub mac: String,
}

/// `[router]`: the neighbour table and ICMP error limits, per worker, with Linux's defaults
/// (the sysctl each key mirrors is named beside it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConf {
    /// Neighbour entries per worker (`gc_thresh3`).
    #[serde(default = "default_neigh_entries")]
    pub neigh_entries: usize,
    /// Packets waiting per unresolved neighbour (`unres_qlen`, in packets).
    #[serde(default = "default_neigh_queue")]
    pub neigh_queue: usize,
    /// How long an answer keeps a neighbour reachable (`base_reachable_time_ms`).
    #[serde(default = "default_reachable_ms")]
    pub base_reachable_time_ms: u64,
    /// Interval between requests (`retrans_time_ms`).
    #[serde(default = "default_retrans_ms")]
    pub retrans_time_ms: u64,
    /// Requests before a resolution fails (`mcast_solicit`).
    #[serde(default = "default_max_probes")]
    pub max_probes: u8,
    /// An unused stale neighbour is forgotten after this many seconds (`gc_stale_time`).
    #[serde(default = "default_gc_stale")]
    pub gc_stale_time: u64,
    /// ICMP errors per second per worker, 0 for no limit (`icmp_msgs_per_sec`).
    #[serde(default = "default_icmp_rate")]
    pub icmp_msgs_per_sec: u32,
    /// ICMP errors sent back to back (`icmp_msgs_burst`).
    #[serde(default = "default_icmp_burst")]
    pub icmp_msgs_burst: u32,
}

fn default_neigh_entries() -> usize {
    4096
}
fn default_neigh_queue() -> usize {
    4
}
fn default_reachable_ms() -> u64 {
    30_000
}
fn default_retrans_ms() -> u64 {
    1_000
}
fn default_max_probes() -> u8 {
    3
}
fn default_gc_stale() -> u64 {
    60
}
fn default_icmp_rate() -> u32 {
    1000
}
fn default_icmp_burst() -> u32 {
    50
}

impl Default for RouterConf {
    fn default() -> Self {
        RouterConf {
            neigh_entries: default_neigh_entries(),
            neigh_queue: default_neigh_queue(),
            base_reachable_time_ms: default_reachable_ms(),
            retrans_time_ms: default_retrans_ms(),
            max_probes: default_max_probes(),
            gc_stale_time: default_gc_stale(),
            icmp_msgs_per_sec: default_icmp_rate(),
            icmp_msgs_burst: default_icmp_burst(),
        }
    }
}

impl RouterConf {
    /// The dataplane's per-worker settings.
    pub fn router_config(&self) -> RouterConfig {
        const MS: u64 = 1_000_000;
        RouterConfig {
            neigh: NeighConfig {
                capacity: self.neigh_entries,
                queue_len: self.neigh_queue,
                reachable_ns: self.base_reachable_time_ms.saturating_mul(MS),
                retrans_ns: self.retrans_time_ms.saturating_mul(MS),
                max_probes: self.max_probes,
                gc_ns: self.gc_stale_time.saturating_mul(1000 * MS),
            },
            icmp: IcmpLimit {
                per_sec: self.icmp_msgs_per_sec,
                burst: self.icmp_msgs_burst,
            },
        }
    }
}

/// `[nat]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatConf {
    /// `[[nat.one_to_one]]`: floating addresses.
    #[serde(default)]
    pub one_to_one: Vec<OneToOneConf>,
}

/// One floating address: `public` maps onto `private` both ways (all protocols and ports).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneToOneConf {
    pub public: String,
    pub private: String,
}

/// `ADDRESS/LENGTH`, the form `ip addr add` takes (the length is required).
pub fn parse_if_addr(s: &str) -> Result<IfAddr, String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: give ADDRESS/LENGTH (192.0.2.1/24, 2001:db8::1/64)"))?;
    let addr: IpAddr = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = l
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?;
    Ok(IfAddr::new(addr, len))
}

/// A route prefix: `ADDRESS/LENGTH` with no host bits set (a bare address is a host route).
pub fn parse_prefix(s: &str) -> Result<IfAddr, String> {
    let p = if s.contains('/') {
        parse_if_addr(s)?
    } else {
        let addr: IpAddr = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: not an IP prefix"))?;
        IfAddr::new(addr, if addr.is_ipv4() { 32 } else { 128 })
    };
    if p.network() != p.addr {
        return Err(format!(
            "{s:?}: host bits set (did you mean {}/{}?)",
            p.network(),
            p.len
        ));
    }
    Ok(p)
}

fn parse_ip(s: &str) -> Result<IpAddr128, String> {
    s.trim()
        .parse::<IpAddr>()
        .map(IpAddr128::from_std)
        .map_err(|_| format!("{s:?}: not an IP address"))
}

/// `02:00:00:00:00:01` (or with dashes): a unicast, non-zero MAC address.
pub fn parse_mac(s: &str) -> Result<MacAddr, String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("{s:?}: not a MAC address (02:00:00:00:00:01)"));
    }
    for (o, p) in mac.iter_mut().zip(&parts) {
        *o = u8::from_str_radix(p, 16)
            .ok()
            .filter(|_| p.len() == 2)
            .ok_or_else(|| format!("{s:?}: not a MAC address (02:00:00:00:00:01)"))?;
    }
    let mac = MacAddr(mac);
    if mac.is_multicast() || mac == MacAddr::ZERO {
        return Err(format!("{s:?}: not a unicast MAC address"));
    }
    Ok(mac)
}

fn family_of(a: &IpAddr128) -> Family {
    if a.is_v4() {
        Family::V4
    } else {
        Family::V6
    }
}

fn is_link_local(a: &IpAddr128) -> bool {
    !a.is_v4() && a.0[0] == 0xfe && a.0[1] & 0xc0 == 0x80
}

/// A route resolved against the ports: prefix, out port index, gateway.
struct Resolved {
    prefix: IfAddr,
    port: usize,
    via: Option<IpAddr128>,
}

impl Config {
    /// The ports' addresses, parsed (validated at load).
    pub(crate) fn port_addrs(&self) -> Vec<Vec<IfAddr>> {
        self.ports
            .iter()
            .map(|p| {
                p.addresses
                    .iter()
                    .filter_map(|s| parse_if_addr(s).ok())
                    .collect()
            })
            .collect()
    }

    /// The 1:1 mappings (`[[nat.one_to_one]]`), parsed (validated at load).
    pub fn one_to_one(&self) -> Vec<OneToOne> {
        self.nat
            .one_to_one
            .iter()
            .filter_map(|m| {
                Some(OneToOne {
                    public: parse_ip(&m.public).ok()?,
                    private: parse_ip(&m.private).ok()?,
                })
            })
            .collect()
    }

    /// The router's table as `-m rpfilter` looks sources up in it
    /// ([`dataplane::classify::rpfilter`]): the static routes, the connected ones over them
    /// (as [`Router::new`] orders them), the ports' addresses, the 1:1 public addresses (on
    /// the port whose subnet holds them), the IPv4 broadcasts and the IPv6 subnet-router
    /// anycast addresses. `None` in bridge mode or when a route does not resolve (the
    /// configuration's validation has refused it then).
    pub fn rp_fib(&self) -> Option<std::sync::Arc<dataplane::classify::rpfilter::RpFib>> {
        use dataplane::classify::rpfilter::{RpEntry, RpFib};
        if self.mode != Mode::Router {
            return None;
        }
        let addrs = self.port_addrs();
        let mut e = Vec::new();
        for r in &self.routes {
            let res = self.resolve_route(&addrs, r).ok()?;
            e.push(RpEntry::Route {
                prefix: res.prefix.addr,
                len: res.prefix.len,
                port: u8::try_from(res.port).ok()?,
            });
        }
        e.push(RpEntry::NotUnicast {
            addr: IpAddr128::from_v4(std::net::Ipv4Addr::BROADCAST),
        });
        for (i, list) in addrs.iter().enumerate() {
            let port = u8::try_from(i).ok()?;
            for a in list {
                e.push(RpEntry::Route {
                    prefix: a.network(),
                    len: a.len,
                    port,
                });
                e.push(RpEntry::Local {
                    addr: a.addr,
                    port: Some(port),
                });
                if let Some(b) = a.broadcast() {
                    e.push(RpEntry::NotUnicast { addr: b });
                }
                if !a.addr.is_v4() && a.len < 127 {
                    e.push(RpEntry::NotUnicast { addr: a.network() });
                }
            }
        }
        for m in self.one_to_one() {
            let port = addrs
                .iter()
                .position(|l| l.iter().any(|a| a.contains(&m.public)))
                .and_then(|p| u8::try_from(p).ok());
            e.push(RpEntry::Local {
                addr: m.public,
                port,
            });
        }
        RpFib::new(&e).ok().map(std::sync::Arc::new)
    }

    /// Checks one route against the ports.
    fn resolve_route(
        &self,
        addrs: &[Vec<IfAddr>],
        r: &RouteConf,
    ) -> Result<Resolved, (&'static str, String)> {
        let prefix = parse_prefix(&r.prefix).map_err(|m| ("prefix", m))?;
        let port = match &r.port {
            Some(name) => Some(
                self.port_index(name)
                    .ok_or_else(|| ("port", format!("no port named {name:?}")))?,
            ),
            None => None,
        };
        let Some(via) = &r.via else {
            let port = port.ok_or_else(|| ("port", "give `via`, `port` or both".to_string()))?;
            return Ok(Resolved {
                prefix,
                port,
                via: None,
            });
        };
        let gw = parse_ip(via).map_err(|m| ("via", m))?;
        if family_of(&gw) != prefix.family() {
            return Err(("via", format!("{via:?} is not of the prefix's family")));
        }
        let std = gw.to_std();
        if std.is_unspecified() || std.is_multicast() || std.is_loopback() {
            return Err(("via", format!("{via:?}: not a unicast address")));
        }
        if addrs.iter().flatten().any(|a| a.addr == gw) {
            return Err(("via", format!("{via:?} is one of Rampart's own addresses")));
        }
        let on = |i: usize| addrs[i].iter().any(|a| a.contains(&gw));
        let port = match port {
            Some(i) if is_link_local(&gw) || on(i) => i,
            Some(i) => {
                return Err((
                    "via",
                    format!(
                        "{via:?} is not in a subnet of port {:?}: the gateway must be directly reachable",
                        self.ports[i].name
                    ),
                ))
            }
            None if is_link_local(&gw) => {
                return Err((
                    "port",
                    format!("a link-local gateway ({via}) needs the port it is on"),
                ))
            }
            None => (0..addrs.len()).find(|&i| on(i)).ok_or_else(|| {
                (
                    "via",
                    format!("{via:?} is not in a connected subnet of any port: the gateway is not reachable"),
                )
            })?,
        };
        Ok(Resolved {
            prefix,
            port,
            via: Some(gw),
        })
    }

    /// The permanent neighbours (`[[neighbour]]`) against the ports' addresses `addrs`: each on
    /// a port that exists, in one of that port's subnets, not one of its addresses, given once.
    /// Errors are (key, message).
    pub(crate) fn static_neighbours(
        &self,
        addrs: &[Vec<IfAddr>],
    ) -> Result<Vec<StaticNeigh>, (String, String)> {
        let mut out: Vec<StaticNeigh> = Vec::with_capacity(self.neighbours.len());
        for (i, n) in self.neighbours.iter().enumerate() {
            let key = |k: &str| format!("neighbour[{i}].{k}");
            let port = self.port_index(&n.port).ok_or_else(|| {
                (
                    key("port"),
                    format!("{:?} is not a configured port", n.port),
                )
            })?;
            let ip = parse_ip(&n.address).map_err(|e| (key("address"), e))?;
            let std = ip.to_std();
            if std.is_unspecified() || std.is_multicast() || std.is_loopback() {
                return Err((key("address"), format!("{ip}: not a unicast address")));
            }
            let mine = addrs.get(port).map(Vec::as_slice).unwrap_or_default();
            if mine.iter().any(|a| a.addr == ip) {
                return Err((
                    key("address"),
                    format!("{ip} is an address of port {:?}", n.port),
                ));
            }
            if !is_link_local(&ip) && !mine.iter().any(|a| a.contains(&ip)) {
                return Err((
                    key("address"),
                    format!("{ip} is not in a connected subnet of port {:?}", n.port),
                ));
            }
            let mac = parse_mac(&n.mac).map_err(|e| (key("mac"), e))?;
            if !mac.is_unicast() || mac == MacAddr::ZERO {
                return Err((key("mac"), format!("{mac} is not a unicast MAC address")));
            }
            if let Some(j) = out
                .iter()
                .position(|o| usize::from(o.port) == port && o.ip == ip)
            {
                return Err((key("address"), format!("{ip} is also neighbour[{j}]")));
            }
            out.push(StaticNeigh {
                port: port as u16,
                ip,
                mac,
            });
        }
        Ok(out)
    }

    /// Validates the router-mode keys (and that bridge mode does not use them).
    pub(crate) fn validate_router(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| Config::invalid(path, key, message);
        let router = self.mode == Mode::Router;
        if router && !self.conntrack.enabled {
            return Err(bad(
                "conntrack.enabled".into(),
                "router mode tracks connections (its NAT and replies need them)".into(),
            ));
        }
        let mut addrs: Vec<Vec<IfAddr>> = Vec::with_capacity(self.ports.len());
        for (i, p) in self.ports.iter().enumerate() {
            let key = format!("port[{i}]");
            if !router {
                for (k, set) in [
                    ("addresses", !p.addresses.is_empty()),
                    ("mtu", p.mtu.is_some()),
                    ("mac", p.mac.is_some()),
                ] {
                    if set {
                        return Err(bad(
                            format!("{key}.{k}"),
                            "only in router mode (mode = \"router\")".into(),
                        ));
                    }
                }
                continue;
            }
            if p.addresses.is_empty() {
                return Err(bad(
                    format!("{key}.addresses"),
                    "router mode needs at least one address per port (\"192.0.2.1/24\")".into(),
                ));
            }
            let mut mine = Vec::new();
            for (j, s) in p.addresses.iter().enumerate() {
                let k = format!("{key}.addresses[{j}]");
                let a = parse_if_addr(s).map_err(|m| bad(k.clone(), m))?;
                let std = a.addr.to_std();
                if std.is_unspecified() || std.is_multicast() || std.is_loopback() {
                    return Err(bad(k, format!("{s:?}: not a unicast address")));
                }
                if is_link_local(&a.addr) {
                    return Err(bad(
                        k,
                        format!("{s:?}: the link-local address comes from the port's MAC (EUI-64)"),
                    ));
                }
                if a.broadcast() == Some(a.addr)
                    || (a.addr.is_v4() && a.len <= 30 && a.network() == a.addr)
                {
                    return Err(bad(
                        k,
                        format!("{s:?} is the subnet's network or broadcast address"),
                    ));
                }
                let seen = addrs.iter().enumerate().chain(std::iter::once((i, &mine)));
                for (q, list) in seen {
                    if let Some(o) = list.iter().find(|o: &&IfAddr| o.addr == a.addr) {
                        return Err(bad(
                            k,
                            format!("{} is already an address of port[{q}] ({o})", a.addr),
                        ));
                    }
                    if q != i {
                        if let Some(o) = list
                            .iter()
                            .find(|o: &&IfAddr| o.contains(&a.addr) || a.contains(&o.addr))
                        {
                            return Err(bad(
                                k,
                                format!("{a} overlaps port[{q}]'s subnet {o}: each subnet belongs to one port"),
                            ));
                        }
                    }
                }
                mine.push(a);
            }
            let v6 = mine.iter().any(|a| a.family() == Family::V6);
            let mtu = p.mtu();
            let min = if v6 { MIN_MTU_V6 } else { MIN_MTU_V4 };
            let room = u32::from(self.mempool.data_room).saturating_sub(128 + 14);
            if mtu < min {
                return Err(bad(
                    format!("{key}.mtu"),
                    format!(
                        "{mtu} is below the minimum of {min}{}",
                        if v6 { " (IPv6)" } else { "" }
                    ),
                ));
            }
            if mtu > room {
                return Err(bad(
                    format!("{key}.mtu"),
                    format!("frames of {mtu} bytes of IP do not fit in an mbuf: raise mempool.data_room to at least {}", mtu + 128 + 14),
                ));
            }
            if let Some(m) = &p.mac {
                parse_mac(m).map_err(|e| bad(format!("{key}.mac"), e))?;
            }
            addrs.push(mine);
        }
        if router && !self.bridge.pairs.is_empty() {
            return Err(bad(
                "bridge.pairs".into(),
                "not used in router mode: packets are routed between ports by destination".into(),
            ));
        }
        if router && self.bridge.name.is_some() {
            return Err(bad(
                "bridge.name".into(),
                "not used in router mode: no packet is bridged".into(),
            ));
        }
        if !router && !self.routes.is_empty() {
            return Err(bad(
                "route[0]".into(),
                "only in router mode (mode = \"router\")".into(),
            ));
        }
        if !router && !self.neighbours.is_empty() {
            return Err(bad(
                "neighbour[0]".into(),
                "only in router mode (mode = \"router\")".into(),
            ));
        }
        self.static_neighbours(&addrs).map_err(|(k, m)| bad(k, m))?;
        if router && self.neighbours.len() >= self.router.neigh_entries {
            return Err(bad(
                "router.neigh_entries".into(),
                format!(
                    "{} leaves no room beside {} permanent neighbours",
                    self.router.neigh_entries,
                    self.neighbours.len()
                ),
            ));
        }
        let mut prefixes: Vec<IfAddr> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let res = self
                .resolve_route(&addrs, r)
                .map_err(|(k, m)| bad(format!("route[{i}].{k}"), m))?;
            let p = res.prefix;
            if let Some(j) = prefixes.iter().position(|q| *q == p) {
                return Err(bad(
                    format!("route[{i}].prefix"),
                    format!("{p} is also route[{j}]'s prefix"),
                ));
            }
            if let Some((q, a)) = addrs.iter().enumerate().find_map(|(q, l)| {
                l.iter()
                    .find(|a| a.len == p.len && a.network() == p.addr)
                    .map(|a| (q, a))
            }) {
                return Err(bad(
                    format!("route[{i}].prefix"),
                    format!("{p} is the connected subnet of port[{q}] ({a})"),
                ));
            }
            prefixes.push(p);
        }
        let rc = &self.router;
        for (key, ok, range) in [
            (
                "router.neigh_entries",
                (1..=1 << 20).contains(&rc.neigh_entries),
                "1 to 1048576",
            ),
            (
                "router.neigh_queue",
                (1..=1024).contains(&rc.neigh_queue),
                "1 to 1024",
            ),
            (
                "router.base_reachable_time_ms",
                (1..=3_600_000).contains(&rc.base_reachable_time_ms),
                "1 to 3600000",
            ),
            (
                "router.retrans_time_ms",
                (1..=60_000).contains(&rc.retrans_time_ms),
                "1 to 60000",
            ),
            ("router.max_probes", rc.max_probes >= 1, "1 to 255"),
            (
                "router.gc_stale_time",
                (1..=86_400).contains(&rc.gc_stale_time),
                "1 to 86400",
            ),
            (
                "router.icmp_msgs_burst",
                rc.icmp_msgs_burst >= 1,
                "at least 1",
            ),
        ] {
            if !ok {
                return Err(bad(key.into(), format!("must be {range}")));
            }
        }
        let mut maps: Vec<(IpAddr128, IpAddr128)> = Vec::new();
        for (i, m) in self.nat.one_to_one.iter().enumerate() {
            let key = format!("nat.one_to_one[{i}]");
            let public = parse_ip(&m.public).map_err(|e| bad(format!("{key}.public"), e))?;
            let private = parse_ip(&m.private).map_err(|e| bad(format!("{key}.private"), e))?;
            for (k, x) in [("public", public), ("private", private)] {
                let std = x.to_std();
                if std.is_unspecified() || std.is_multicast() || std.is_loopback() {
                    return Err(bad(
                        format!("{key}.{k}"),
                        format!("{x}: not a unicast address"),
                    ));
                }
                if let Some((q, _)) = addrs
                    .iter()
                    .enumerate()
                    .find(|(_, l)| l.iter().any(|a| a.addr == x))
                {
                    return Err(bad(
                        format!("{key}.{k}"),
                        format!("{x} is an address of port[{q}]: a 1:1 address must not be a port's own"),
                    ));
                }
            }
            if public.is_v4() != private.is_v4() {
                return Err(bad(
                    format!("{key}.private"),
                    "public and private must be of the same family".into(),
                ));
            }
            if public == private {
                return Err(bad(
                    format!("{key}.private"),
                    "public and private are the same address".into(),
                ));
            }
            for (j, (p, q)) in maps.iter().enumerate() {
                if *p == public || *q == public {
                    return Err(bad(
                        format!("{key}.public"),
                        format!("{public} is already in nat.one_to_one[{j}]"),
                    ));
                }
                if *p == private || *q == private {
                    return Err(bad(
                        format!("{key}.private"),
                        format!("{private} is already in nat.one_to_one[{j}]"),
                    ));
                }
            }
            maps.push((public, private));
        }
        Ok(())
    }
}

/// Builds the dataplane router from a router-mode configuration. `macs[i]` is port `i`'s
/// device MAC address, used unless the port's `mac` overrides it. Each port answers ARP/NDP for
/// the 1:1 public addresses inside one of its subnets (elsewhere the upstream routes them to
/// Rampart).
pub fn build_router(cfg: &Config, macs: &[MacAddr]) -> Result<Router, ConfigError> {
    let err = |key: String, message: String| ConfigError::Build { key, message };
    if cfg.mode != Mode::Router {
        return Err(err("mode".into(), "not \"router\"".into()));
    }
    let addrs = cfg.port_addrs();
    let publics: Vec<IpAddr128> = cfg.one_to_one().iter().map(|m| m.public).collect();
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for (i, p) in cfg.ports.iter().enumerate() {
        let mac = match &p.mac {
            Some(m) => parse_mac(m).map_err(|e| err(format!("port[{i}].mac"), e))?,
            None => *macs.get(i).ok_or_else(|| {
                err(
                    format!("port[{i}].mac"),
                    "the device has no MAC address: give one".into(),
                )
            })?,
        };
        if !mac.is_unicast() || mac == MacAddr::ZERO {
            return Err(err(
                format!("port[{i}].mac"),
                format!("{mac} is not a unicast MAC address"),
            ));
        }
        let mut l3 = PortL3::new(mac, addrs[i].clone(), p.mtu());
        l3.nat_addrs = publics
            .iter()
            .copied()
            .filter(|x| addrs[i].iter().any(|a| a.contains(x)))
            .collect();
        ports.push(l3);
    }
    let mut routes = Vec::with_capacity(cfg.routes.len());
    for (i, r) in cfg.routes.iter().enumerate() {
        let res = cfg
            .resolve_route(&addrs, r)
            .map_err(|(k, m)| err(format!("route[{i}].{k}"), m))?;
        routes.push(Route {
            family: res.prefix.family(),
            prefix: res.prefix.addr,
            len: res.prefix.len,
            hop: NextHop {
                port: res.port as u8,
                gateway: res.via,
            },
        });
    }
    let neighbours = cfg.static_neighbours(&addrs).map_err(|(k, m)| err(k, m))?;
    Router::new(ports, &routes, cfg.router.router_config())
        .and_then(|r| r.with_neighbours(neighbours))
        .map_err(|e| err("port".into(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::router::Egress;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("r.toml"), text)
    }

    const MACS: [MacAddr; 2] = [MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])];

    const ROUTER: &str = r#"
mode = "router"
[[port]]
name = "inside"
device = "net_pcap0,rx_pcap=a.pcap"
addresses = ["10.0.0.1/24", "fd00::1/64"]
[[port]]
name = "outside"
device = "net_pcap1,rx_pcap=b.pcap"
addresses = ["203.0.113.1/24", "2001:db8::1/64"]
mtu = 1400
mac = "02:aa:00:00:00:02"
[[route]]
prefix = "0.0.0.0/0"
via = "203.0.113.254"
[[route]]
prefix = "::/0"
via = "fe80::1"
port = "outside"
[[route]]
prefix = "198.51.100.0/24"
port = "outside"
[router]
neigh_entries = 128
icmp_msgs_per_sec = 10
[[nat.one_to_one]]
public = "203.0.113.10"
private = "10.0.0.10"
[[nat.one_to_one]]
public = "198.51.100.200"
private = "10.0.0.11"
"#;

    fn a(s: &str) -> IpAddr128 {
        IpAddr128::from_std(s.parse().unwrap())
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn router_config_builds_the_router() {
        let c = parse(ROUTER).unwrap();
        assert_eq!(c.mode, Mode::Router);
        assert_eq!(c.ports[1].mtu(), 1400);
        assert_eq!(c.ports[0].mtu(), 1500);
        let r = build_router(&c, &MACS).unwrap();
        let p: Vec<&PortL3> = r.ports().collect();
        assert_eq!(p[0].mac, MACS[0]);
        assert_eq!(
            p[1].mac,
            MacAddr([2, 0xaa, 0, 0, 0, 2]),
            "configured MAC wins"
        );
        assert_eq!(p[1].mtu, 1400);
        assert_eq!(
            p[1].nat_addrs,
            vec![a("203.0.113.10")],
            "only inside a subnet"
        );
        assert!(p[0].nat_addrs.is_empty());
        let hop = |f, d| match r.decide(f, &a(d)) {
            Egress::Forward(h) => (h.port, h.gateway),
            other => panic!("{d}: {other:?}"),
        };
        assert_eq!(hop(Family::V4, "8.8.8.8"), (1, Some(a("203.0.113.254"))));
        assert_eq!(hop(Family::V4, "10.0.0.7"), (0, None));
        assert_eq!(hop(Family::V4, "198.51.100.9"), (1, None));
        assert_eq!(hop(Family::V6, "2606:4700::1"), (1, Some(a("fe80::1"))));
        assert_eq!(r.decide(Family::V4, &a("203.0.113.10")), Egress::Local);
        assert_eq!(
            r.source_for(1, Family::V4, &a("8.8.8.8")),
            Some(a("203.0.113.1"))
        );
        let rc = r.config();
        assert_eq!(rc.neigh.capacity, 128);
        assert_eq!(rc.neigh.reachable_ns, 30_000_000_000);
        assert_eq!(rc.neigh.gc_ns, 60_000_000_000);
        assert_eq!(
            rc.icmp,
            IcmpLimit {
                per_sec: 10,
                burst: 50
            }
        );
        assert_eq!(
            c.one_to_one(),
            vec![
                OneToOne {
                    public: a("203.0.113.10"),
                    private: a("10.0.0.10")
                },
                OneToOne {
                    public: a("198.51.100.200"),
                    private: a("10.0.0.11")
                }
            ]
        );
        // The device MACs are needed where the configuration gives none.
        let e = build_router(&c, &[]).unwrap_err().to_string();
        assert!(e.contains("port[0].mac"), "{e}");
        assert!(build_router(&c, &MACS[..1]).is_ok(), "port 1 has its own");
        let b = parse(
            &ROUTER
                .replace("mode = \"router\"", "")
                .replace("addresses", "#"),
        );
        assert!(b.is_err());
    }

    #[test]
    fn the_routes_alias_is_accepted() {
        let c = parse(&ROUTER.replace("[[route]]", "[[routes]]")).unwrap();
        assert_eq!(c.routes.len(), 3);
    }

    #[test]
    fn router_errors_name_the_key() {
        for (from, to, key) in [
            (
                r#"addresses = ["10.0.0.1/24", "fd00::1/64"]"#,
                "",
                "port[0].addresses",
            ),
            (
                r#""10.0.0.1/24", "fd00::1/64""#,
                r#""10.0.0.1""#,
                "port[0].addresses[0]",
            ),
            (
                r#""10.0.0.1/24""#,
                r#""10.0.0.0/24""#,
                "port[0].addresses[0]",
            ),
            (
                r#""10.0.0.1/24""#,
                r#""fe80::1/64""#,
                "port[0].addresses[0]",
            ),
            (
                r#""10.0.0.1/24""#,
                r#""224.0.0.1/24""#,
                "port[0].addresses[0]",
            ),
            (
                r#""10.0.0.1/24""#,
                r#""203.0.113.1/24""#,
                "port[1].addresses[0]",
            ),
            (
                r#""10.0.0.1/24""#,
                r#""203.0.113.7/16""#,
                "port[1].addresses[0]",
            ),
            (
                r#""10.0.0.1/24""#,
                r#""10.0.0.1/24", "10.0.0.1/16""#,
                "port[0].addresses[1]",
            ),
            ("mtu = 1400", "mtu = 1000", "port[1].mtu"),
            ("mtu = 1400", "mtu = 9000", "port[1].mtu"),
            ("02:aa:00:00:00:02", "03:aa:00:00:00:02", "port[1].mac"),
            ("02:aa:00:00:00:02", "02:aa:00:00:00", "port[1].mac"),
            (
                r#"via = "203.0.113.254""#,
                r#"via = "192.0.2.1""#,
                "route[0].via",
            ),
            (
                r#"via = "203.0.113.254""#,
                r#"via = "203.0.113.1""#,
                "route[0].via",
            ),
            (
                r#"via = "203.0.113.254""#,
                r#"via = "2001:db8::5""#,
                "route[0].via",
            ),
            (r#"via = "203.0.113.254""#, "", "route[0].port"),
            (
                r#"prefix = "0.0.0.0/0""#,
                r#"prefix = "10.0.0.0/24""#,
                "route[0].prefix",
            ),
            (
                r#"prefix = "0.0.0.0/0""#,
                r#"prefix = "10.1.0.0/8""#,
                "route[0].prefix",
            ),
            (
                r#"prefix = "0.0.0.0/0""#,
                r#"prefix = "198.51.100.0/24""#,
                "route[2].prefix",
            ),
            (r#"port = "outside""#, r#"port = "nope""#, "route[1].port"),
            (
                "[[route]]\nprefix = \"::/0\"\nvia = \"fe80::1\"\nport = \"outside\"",
                "[[route]]\nprefix = \"::/0\"\nvia = \"fe80::1\"",
                "route[1].port",
            ),
            (
                "neigh_entries = 128",
                "neigh_entries = 0",
                "router.neigh_entries",
            ),
            (
                "icmp_msgs_per_sec = 10",
                "icmp_msgs_burst = 0",
                "router.icmp_msgs_burst",
            ),
            (
                r#"private = "10.0.0.10""#,
                r#"private = "fd00::10""#,
                "nat.one_to_one[0].private",
            ),
            (
                r#"private = "10.0.0.11""#,
                r#"private = "10.0.0.10""#,
                "nat.one_to_one[1].private",
            ),
            (
                r#"public = "203.0.113.10""#,
                r#"public = "203.0.113.1""#,
                "nat.one_to_one[0].public",
            ),
            (
                r#"public = "203.0.113.10""#,
                r#"public = "nope""#,
                "nat.one_to_one[0].public",
            ),
        ] {
            assert!(ROUTER.contains(from), "{from}");
            let e = err(&ROUTER.replacen(from, to, 1));
            assert!(e.contains(&format!("`{key}`")), "{from} -> {to}: {e}");
        }
        let e = err(&format!(
            "{ROUTER}\n[bridge]\npairs = [[\"inside\", \"outside\"]]\n"
        ));
        assert!(e.contains("bridge.pairs"), "{e}");
        let e = err(&format!("{ROUTER}\n[bridge]\nname = \"br0\"\n"));
        assert!(
            e.contains("bridge.name") && e.contains("no packet is bridged"),
            "{e}"
        );
        let e = err(&format!("{ROUTER}\n[router.bogus]\n"));
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bridge_mode_refuses_router_keys() {
        let bridge = ROUTER.replace("mode = \"router\"", "mode = \"bridge\"");
        let e = err(&bridge);
        assert!(
            e.contains("port[0].addresses") && e.contains("router mode"),
            "{e}"
        );
        let plain = r#"
[[port]]
name = "a"
device = "net_null0"
[[route]]
prefix = "0.0.0.0/0"
port = "a"
"#;
        let e = err(plain);
        assert!(e.contains("route[0]"), "{e}");
        let e = err("[[port]]\nname = \"a\"\ndevice = \"net_null0\"\nmtu = 1400\n");
        assert!(e.contains("port[0].mtu"), "{e}");
        // 1:1 NAT parses in either mode.
        let c =
            parse("[[nat.one_to_one]]\npublic = \"192.0.2.1\"\nprivate = \"10.0.0.1\"\n").unwrap();
        assert_eq!(c.one_to_one().len(), 1);
        assert!(build_router(&c, &MACS).is_err(), "not router mode");
    }

    #[test]
    fn parsers() {
        assert_eq!(
            parse_mac("02-00-5e-10-00-01").unwrap(),
            MacAddr([2, 0, 0x5e, 0x10, 0, 1])
        );
        assert!(parse_mac("00:00:00:00:00:00").is_err());
        assert!(parse_mac("02:00:00:00:00:0g").is_err());
        assert!(parse_mac("2:0:0:0:0:1").is_err());
        assert_eq!(
            parse_prefix("10.0.0.5").unwrap(),
            IfAddr::new("10.0.0.5".parse().unwrap(), 32)
        );
        assert!(parse_prefix("10.0.0.5/24")
            .unwrap_err()
            .contains("10.0.0.0/24"));
        assert_eq!(parse_if_addr("2001:db8::1/64").unwrap().len, 64);
        assert!(parse_if_addr("2001:db8::1/129").is_err());
        assert!(parse_if_addr("2001:db8::1").is_err());
    }

    #[test]
    fn the_readme_router_example_parses_and_builds() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let section = &readme[readme.find("### Router mode").expect("section")..];
        let start = section.find("```toml\n").expect("toml block") + 8;
        let block = &section[start..start + section[start..].find("```").unwrap()];
        let c = parse(block).unwrap_or_else(|e| panic!("{e}"));
        let r = build_router(&c, &MACS).unwrap();
        assert_eq!(r.ports().len(), 2);
        assert_eq!(c.one_to_one().len(), 1);
    }

    #[test]
    fn the_example_router_config_loads_and_builds() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/router.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.mode, Mode::Router);
        let macs = vec![MacAddr([2, 0, 0, 0, 0, 9]); c.ports.len()];
        let r = build_router(&c, &macs).unwrap();
        assert!(matches!(
            r.decide(Family::V4, &a("8.8.8.8")),
            Egress::Forward(_)
        ));
        assert!(!c.one_to_one().is_empty());
    }

    #[test]
    fn permanent_neighbours_are_checked_and_installed_in_every_worker() {
        let n = |port: &str, address: &str, mac: &str| {
            format!("[[neighbour]]\nport = \"{port}\"\naddress = \"{address}\"\nmac = \"{mac}\"\n")
        };
        let ok = format!(
            "{ROUTER}{}{}",
            n("outside", "203.0.113.254", "02:00:00:00:fe:fe"),
            n("inside", "fd00::5", "02:00:00:00:00:05")
        );
        let c = parse(&ok).unwrap_or_else(|e| panic!("{e}"));
        let r = build_router(&c, &MACS).unwrap();
        assert_eq!(r.neighbours().len(), 2);
        let st: dataplane::router::RouterState<Vec<u8>> = r.new_state(0);
        assert_eq!(
            st.neigh.get(1, &a("203.0.113.254")),
            Some((
                dataplane::route::neigh::NeighState::Permanent,
                MacAddr([2, 0, 0, 0, 0xfe, 0xfe])
            ))
        );
        for (extra, key, what) in [
            (
                n("outside", "10.0.0.5", "02:00:00:00:00:05"),
                "neighbour[0].address",
                "not in a connected subnet",
            ),
            (
                n("outside", "203.0.113.1", "02:00:00:00:00:05"),
                "neighbour[0].address",
                "is an address of port",
            ),
            (
                n("outside", "224.0.0.1", "02:00:00:00:00:05"),
                "neighbour[0].address",
                "not a unicast",
            ),
            (
                n("outside", "203.0.113.9", "ff:ff:ff:ff:ff:ff"),
                "neighbour[0].mac",
                "not a unicast MAC",
            ),
            (n("outside", "203.0.113.9", "02:00"), "neighbour[0].mac", ""),
            (
                n("elsewhere", "203.0.113.9", "02:00:00:00:00:05"),
                "neighbour[0].port",
                "not a configured port",
            ),
            (
                format!(
                    "{}{}",
                    n("outside", "203.0.113.9", "02:00:00:00:00:05"),
                    n("outside", "203.0.113.9", "02:00:00:00:00:06")
                ),
                "neighbour[1].address",
                "also neighbour[0]",
            ),
        ] {
            let e = err(&format!("{ROUTER}{extra}"));
            assert!(e.contains(key) && e.contains(what), "{key}: {e}");
        }
        let full = ROUTER.replace("neigh_entries = 128", "neigh_entries = 2");
        let e = err(&format!(
            "{full}{}{}",
            n("outside", "203.0.113.8", "02:00:00:00:00:08"),
            n("outside", "203.0.113.9", "02:00:00:00:00:09")
        ));
        assert!(e.contains("router.neigh_entries"), "{e}");
        let bridge = "[[port]]\nname = \"a\"\ndevice = \"net_null0\"\n[[port]]\nname = \"b\"\ndevice = \"net_null1\"\n";
        let e = err(&format!(
            "{bridge}{}",
            n("a", "10.0.0.5", "02:00:00:00:00:05")
        ));
        assert!(
            e.contains("neighbour[0]") && e.contains("only in router mode"),
            "{e}"
        );
    }
}
