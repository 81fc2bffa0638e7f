//! Router-mode test topologies: an inside client and an outside server in their own network
//! namespaces, with a router between them, either Rampart or Linux.
//!
//! ```text
//!  inside ns                                                       outside ns
//!  vi 10.N.0.2/24, fd00:N::2/64                                    vo 203.0.113.2/24, 2001:db8:N::2/64
//!   |  default via 10.N.0.1 / fd00:N::1                             |  10.N.0.0/24 via 203.0.113.1
//!   |                                                               |  fd00:N::/64 via 2001:db8:N::1
//!  [veth]                                                          [veth]
//!   |                                                               |
//!  Rampart: `ports[0]` (current namespace)  ---------------------  `ports[1]`
//!           inside 10.N.0.1/24, fd00:N::1/64   outside 203.0.113.1/24, 2001:db8:N::1/64
//!  Linux:   router ns, `ri` and `ro` with those addresses, forwarding on, iptables-restore'd
//! ```
//!
//! [`RouterTopology::for_rampart`] leaves the router's ends of the veth pairs in the current
//! namespace, without addresses and with IPv6 off (so the kernel sends nothing on them), for
//! Rampart to open with `net_af_packet` ([`RouterTopology::rampart_ports`] writes the
//! `[[port]]` tables). [`RouterTopology::with_linux_router`] puts them in a router namespace
//! that Linux forwards in, for comparison runs. The outside server has a route back to the
//! inside network, so traffic crosses with or without NAT.
//!
//! Names are unique per process and call ([`crate::unique`]); everything is deleted on drop,
//! also when a test panics. Creating a topology needs root: call [`crate::root_or_skip`] first.
//! Offloads are off on every veth end: frames cross user space with real checksums.

use crate::{run, run_ok, unique};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Rampart's (or the Linux router's) addresses on its two ports, and the hosts', for subnet `N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressing {
    pub net: u8,
}

impl Addressing {
    pub fn inside_host_v4(&self) -> String {
        format!("10.{}.0.2", self.net)
    }
    pub fn inside_host_v6(&self) -> String {
        format!("fd00:{}::2", self.net)
    }
    pub fn router_inside_v4(&self) -> String {
        format!("10.{}.0.1", self.net)
    }
    pub fn router_inside_v6(&self) -> String {
        format!("fd00:{}::1", self.net)
    }
    pub fn router_outside_v4(&self) -> String {
        "203.0.113.1".into()
    }
    pub fn router_outside_v6(&self) -> String {
        format!("2001:db8:{}::1", self.net)
    }
    pub fn server_v4(&self) -> String {
        "203.0.113.2".into()
    }
    pub fn server_v6(&self) -> String {
        format!("2001:db8:{}::2", self.net)
    }
    /// The router's addresses on the inside port, with prefix lengths.
    pub fn router_inside(&self) -> [String; 2] {
        [
            format!("{}/24", self.router_inside_v4()),
            format!("{}/64", self.router_inside_v6()),
        ]
    }
    /// The router's addresses on the outside port, with prefix lengths.
    pub fn router_outside(&self) -> [String; 2] {
        [
            format!("{}/24", self.router_outside_v4()),
            format!("{}/64", self.router_outside_v6()),
        ]
    }
}

/// `ip netns exec NS ARGS...`.
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args));
}

fn offloads_off(ns: Option<&str>, dev: &str) {
    let args = [
        "ethtool", "-K", dev, "rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off",
    ];
    // Not every kernel has every offload: best effort, as the other namespace tests do.
    match ns {
        Some(ns) => run(&mut in_ns(ns, &args)),
        None => run(Command::new(args[0]).args(&args[1..])),
    };
}

/// Namespaces and links of a router test, deleted on drop.
pub struct RouterTopology {
    pub addressing: Addressing,
    /// The client's namespace (its interface is `vi`).
    pub inside: String,
    /// The server's namespace (its interface is `vo`).
    pub outside: String,
    /// Rampart's veth ends in the current namespace, `[inside, outside]`: what its
    /// `net_af_packet` ports open. Empty with a Linux router.
    pub ports: Vec<String>,
    /// The Linux router's namespace (interfaces `ri`, `ro`), if any.
    pub router: Option<String>,
}

impl RouterTopology {
    fn hosts(net: u8) -> RouterTopology {
        let u = unique("");
        let t = RouterTopology {
            addressing: Addressing { net },
            inside: format!("rti{u}"),
            outside: format!("rto{u}"),
            ports: Vec::new(),
            router: None,
        };
        for ns in [&t.inside, &t.outside] {
            ip(&["netns", "add", ns]);
            run_ok(&mut in_ns(ns, &["ip", "link", "set", "lo", "up"]));
        }
        t
    }

    /// Addresses, routes and links up inside the two host namespaces.
    fn configure_hosts(&self) {
        let a = self.addressing;
        let net = a.net;
        let inside_routes = [
            ["-4".to_string(), "default".into(), a.router_inside_v4()],
            ["-6".into(), "default".into(), a.router_inside_v6()],
        ];
        let outside_routes = [
            [
                "-4".to_string(),
                format!("10.{net}.0.0/24"),
                a.router_outside_v4(),
            ],
            [
                "-6".into(),
                format!("fd00:{net}::/64"),
                a.router_outside_v6(),
            ],
        ];
        for (ns, dev, v4, v6, routes) in [
            (
                &self.inside,
                "vi",
                a.inside_host_v4(),
                a.inside_host_v6(),
                inside_routes,
            ),
            (
                &self.outside,
                "vo",
                a.server_v4(),
                a.server_v6(),
                outside_routes,
            ),
        ] {
            offloads_off(Some(ns), dev);
            let v4 = format!("{v4}/24");
            let v6 = format!("{v6}/64");
            run_ok(&mut in_ns(ns, &["ip", "addr", "add", &v4, "dev", dev]));
            run_ok(&mut in_ns(
                ns,
                &["ip", "addr", "add", &v6, "dev", dev, "nodad"],
            ));
            run_ok(&mut in_ns(ns, &["ip", "link", "set", dev, "up"]));
            for [family, to, via] in &routes {
                run_ok(&mut in_ns(
                    ns,
                    &["ip", family, "route", "add", to, "via", via],
                ));
            }
        }
    }

    /// Client and server namespaces joined to two veth ends in the current namespace, for
    /// Rampart (see the module docs). The ends are up, without addresses, IPv6 off.
    pub fn for_rampart(net: u8) -> RouterTopology {
        let mut t = RouterTopology::hosts(net);
        for (ns, inner, tag) in [
            (t.inside.clone(), "vi", "i"),
            (t.outside.clone(), "vo", "o"),
        ] {
            let end = format!("{ns}{tag}");
            let end = if end.len() > 15 {
                format!("rt{}{tag}", &ns[3..])
            } else {
                end
            };
            ip(&[
                "link", "add", &end, "type", "veth", "peer", "name", inner, "netns", &ns,
            ]);
            t.ports.push(end.clone());
            run(Command::new("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{end}.disable_ipv6=1")]));
            offloads_off(None, &end);
            ip(&["link", "set", &end, "up"]);
        }
        t.configure_hosts();
        t
    }

    /// The same hosts with a Linux router namespace between them: `ri` and `ro` carry the
    /// router's addresses, IPv4 and IPv6 forwarding are on, and `rules4`/`rules6`
    /// (iptables-save text) are loaded with iptables-restore/ip6tables-restore when given.
    pub fn with_linux_router(
        net: u8,
        rules4: Option<&str>,
        rules6: Option<&str>,
    ) -> RouterTopology {
        let mut t = RouterTopology::hosts(net);
        let r = format!("rtr{}", &t.inside[3..]);
        ip(&["netns", "add", &r]);
        t.router = Some(r.clone());
        run_ok(&mut in_ns(&r, &["ip", "link", "set", "lo", "up"]));
        let a = t.addressing;
        for (mine, peer, ns, addrs) in [
            ("ri", "vi", &t.inside, a.router_inside()),
            ("ro", "vo", &t.outside, a.router_outside()),
        ] {
            ip(&[
                "-n", &r, "link", "add", mine, "type", "veth", "peer", "name", peer, "netns", ns,
            ]);
            offloads_off(Some(&r), mine);
            run_ok(&mut in_ns(
                &r,
                &["ip", "addr", "add", &addrs[0], "dev", mine],
            ));
            run_ok(&mut in_ns(
                &r,
                &["ip", "addr", "add", &addrs[1], "dev", mine, "nodad"],
            ));
            run_ok(&mut in_ns(&r, &["ip", "link", "set", mine, "up"]));
        }
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            run_ok(&mut in_ns(&r, &["sysctl", "-qw", key]));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        for (tool, rules, name) in [
            ("iptables-restore", rules4, "rules.v4"),
            ("ip6tables-restore", rules6, "rules.v6"),
        ] {
            if let Some(text) = rules {
                let p = dir.path().join(name);
                std::fs::write(&p, text).expect("write rules");
                run_ok(&mut in_ns(&r, &[tool, p.to_str().expect("utf-8 path")]));
            }
        }
        t.configure_hosts();
        t
    }

    /// The `[[port]]` tables for Rampart in router mode: `inside` and `outside` on this
    /// topology's veth ends (`net_af_packet`, one queue pair; `prefix` makes the device names
    /// unique), with the router's addresses.
    pub fn rampart_ports(&self, prefix: &str) -> String {
        assert_eq!(self.ports.len(), 2, "a topology made for Rampart");
        let a = self.addressing;
        let list = |x: [String; 2]| format!("[\"{}\", \"{}\"]", x[0], x[1]);
        format!(
            "[[port]]\nname = \"inside\"\ndevice = \"net_af_packet{prefix}i,iface={},qpairs=1\"\naddresses = {}\n\n\
             [[port]]\nname = \"outside\"\ndevice = \"net_af_packet{prefix}o,iface={},qpairs=1\"\naddresses = {}\n",
            self.ports[0],
            list(a.router_inside()),
            self.ports[1],
            list(a.router_outside()),
        )
    }

    /// Runs `args` in the client's namespace.
    pub fn inside_cmd(&self, args: &[&str]) -> Command {
        in_ns(&self.inside, args)
    }

    /// Runs `args` in the server's namespace.
    pub fn outside_cmd(&self, args: &[&str]) -> Command {
        in_ns(&self.outside, args)
    }

    /// `ping -c COUNT` from the client to `dst` (IPv4 or IPv6), one second per reply at most.
    pub fn ping_from_inside(&self, dst: &str, count: u32) -> Output {
        let c = count.to_string();
        run(&mut self.inside_cmd(&["ping", "-c", &c, "-i", "0.2", "-W", "1", dst]))
    }

    /// Pings `dst` from the client until a reply comes or `timeout` passes (links and
    /// neighbour resolution need a moment); whether it got through.
    pub fn wait_ping(&self, dst: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.ping_from_inside(dst, 1).status.success() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RouterTopology {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and so their peers.
        for end in &self.ports {
            let _ = Command::new("ip").args(["link", "del", end]).output();
        }
        for ns in [
            Some(&self.inside),
            Some(&self.outside),
            self.router.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_and_port_tables() {
        let a = Addressing { net: 7 };
        assert_eq!(
            a.router_inside(),
            ["10.7.0.1/24".to_string(), "fd00:7::1/64".into()]
        );
        assert_eq!(a.server_v6(), "2001:db8:7::2");
        // The port tables are valid router-mode configuration (no root needed to check).
        let t = RouterTopology {
            addressing: a,
            inside: "x".into(),
            outside: "y".into(),
            ports: vec!["rtaxi".into(), "rtaxo".into()],
            router: None,
        };
        let text = format!("mode = \"router\"\n{}", t.rampart_ports("p1"));
        let cfg = control::config::Config::parse(std::path::Path::new("t.toml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.ports[1].addresses, a.router_outside().to_vec());
        std::mem::forget(t); // nothing was created
    }
}
