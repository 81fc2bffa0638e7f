//! Linux netfilter as the reference for Rampart's filtering and connection tracking.
//!
//! [`LinuxBridge`] builds the topology in which Linux does the job of Rampart's bridge mode:
//!
//! ```text
//!  inside ns            router ns                          outside ns
//!  vi ---- veth ---- ri -[ br0, br_netfilter ]- ro ---- veth ---- vo
//! ```
//!
//! The router namespace bridges `ri` and `ro` (no STP, no learning: every frame floods to the
//! other port), calls iptables/ip6tables on bridged IP traffic (`bridge-nf-call-*`), and holds the
//! rule set under test. [`LinuxBridge::run`] injects frames one at a time on `vi` or `vo`
//! (by source address, as `rampart replay --inside` does), with their MAC addresses rewritten to
//! one fixed pair per direction, and records what leaves on the other side and, through NFLOG
//! rules in the mangle FORWARD chain (one per conntrack state), the state conntrack gave each
//! packet. Both are attributed back to input frames by content: an IP packet is known by its
//! addresses, protocol and L4 bytes, so fragments that Linux reassembles (and re-fragments on
//! the way out) still find the frames they came from.
//!
//! Every namespace is created with a unique name and deleted on drop, also when a test panics.
//! The sysctls that decide conntrack's answers are set explicitly: `nf_conntrack_tcp_loose=1`,
//! `nf_conntrack_checksum=1`, `nf_conntrack_tcp_be_liberal=0`.

use crate::{run, run_ok, unique};
use control::prefix::Prefix;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// The NFLOG group the state rules log to (per namespace, so any fixed number will do).
pub const NFLOG_GROUP: u16 = 7;
/// Conntrack states as `-m conntrack --ctstate` names them.
pub const STATES: [&str; 5] = ["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"];
/// The conntrack sysctls set in the router namespace, with their Linux defaults made explicit.
pub const CONNTRACK_SYSCTLS: [(&str, &str); 3] = [
    ("net.netfilter.nf_conntrack_tcp_loose", "1"),
    ("net.netfilter.nf_conntrack_checksum", "1"),
    ("net.netfilter.nf_conntrack_tcp_be_liberal", "0"),
];
/// The bridge sysctls: bridged IPv4, IPv6 and 802.1Q-tagged IP traffic goes through
/// iptables/ip6tables, as Rampart filters tagged IP traffic too.
pub const BRIDGE_SYSCTLS: [(&str, &str); 3] = [
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("net.bridge.bridge-nf-filter-vlan-tagged", "1"),
];

/// MAC of frames injected on the inside; frames injected on the outside are sent to it.
const MAC_INSIDE: [u8; 6] = [0x02, 0x52, 0x41, 0, 0, 0x01];
/// MAC of frames injected on the outside.
const MAC_OUTSIDE: [u8; 6] = [0x02, 0x52, 0x41, 0, 0, 0x02];
/// Microseconds between two injected frames: long enough for the kernel to finish with one
/// frame (bridge, netfilter, the other veth) before the next is sent.
const GAP_US: u64 = 1000;

/// What happened to one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub forwarded: bool,
    /// The conntrack state the packet was given; `None` when it never reached a point where
    /// one is known (Linux: never seen by the FORWARD hook; Rampart: no rule judged it).
    pub ct_state: Option<String>,
    /// Why it was dropped, when the side says (Rampart's drop reason); shown, not compared.
    pub reason: Option<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            if self.forwarded { "fwd " } else { "drop" },
            self.ct_state.as_deref().unwrap_or("-")
        )?;
        match &self.reason {
            Some(r) if !self.forwarded && !r.starts_with("rule_") => write!(f, " ({r})"),
            _ => Ok(()),
        }
    }
}

/// Which side of the bridge a frame is injected on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Inside,
    Outside,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }
}

/// The side a frame enters on: inside when its IP source is in `inside`, else outside (frames
/// without an IP source too), as `rampart replay --inside` decides.
pub fn side_of(frame: &[u8], inside: &[Prefix]) -> Side {
    let src = dataplane::wire::parse_frame(frame)
        .ok()
        .and_then(|i| i.flow)
        .map(|k| k.src.to_std());
    match src {
        Some(ip) if inside.iter().any(|p| p.contains(ip)) => Side::Inside,
        _ => Side::Outside,
    }
}

/// Parses a comma-separated prefix list.
pub fn prefixes(list: &str) -> Vec<Prefix> {
    list.split(',')
        .map(|p| {
            p.trim()
                .parse()
                .unwrap_or_else(|e| panic!("bad prefix {p:?}: {e}"))
        })
        .collect()
}

fn ns_cmd(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// Three namespaces joined by two veth pairs, `vi` (inside) to `ri` (middle) and `ro` (middle)
/// to `vo` (outside); what joins `ri` and `ro` is up to the user. Deleted on drop.
pub struct Namespaces {
    pub inside: String,
    pub middle: String,
    pub outside: String,
}

impl Namespaces {
    /// Creates the namespaces and links, with IPv6 off and offloads off, links up.
    fn create(tag: &str) -> Namespaces {
        let u = unique("");
        let t = Namespaces {
            inside: format!("{tag}i{u}"),
            middle: format!("{tag}m{u}"),
            outside: format!("{tag}o{u}"),
        };
        for ns in [&t.inside, &t.middle, &t.outside] {
            run_ok(Command::new("ip").args(["netns", "add", ns]));
            // No IPv6 on any link: no router solicitations or MLD reports among the frames.
            for k in ["all", "default"] {
                run_ok(&mut ns_cmd(
                    ns,
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{k}.disable_ipv6=1"),
                    ],
                ));
            }
        }
        for (mine, peer, ns) in [("ri", "vi", &t.inside), ("ro", "vo", &t.outside)] {
            t.ip_middle(&[
                "link", "add", mine, "type", "veth", "peer", "name", peer, "netns", ns,
            ]);
        }
        // Frames cross exactly as injected: no offloads that would merge, split or skip checksum
        // verification (conntrack must verify checksums itself), and room for any corpus frame.
        for (ns, dev) in t.links() {
            run(&mut ns_cmd(
                ns,
                &[
                    "ethtool", "-K", dev, "rx", "off", "tx", "off", "tso", "off", "gso", "off",
                    "gro", "off",
                ],
            ));
            run_ok(&mut ns_cmd(ns, &["ip", "link", "set", dev, "mtu", "9000"]));
        }
        t
    }

    fn links(&self) -> [(&str, &str); 4] {
        [
            (&self.inside, "vi"),
            (&self.middle, "ri"),
            (&self.middle, "ro"),
            (&self.outside, "vo"),
        ]
    }

    fn ip_middle(&self, args: &[&str]) {
        run_ok(Command::new("ip").arg("-n").arg(&self.middle).args(args));
    }

    fn set_up(&self) {
        for (ns, dev) in self.links() {
            run_ok(&mut ns_cmd(ns, &["ip", "link", "set", dev, "up"]));
        }
    }

    /// Waits until every veth end has its carrier and, with `bridge`, both bridge ports
    /// forward: carrier changes reach the bridge through the kernel's link watcher, up to a
    /// second late, and frames sent before that are lost.
    fn wait_ready(&self, bridge: bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let json = |args: &[&str]| -> serde_json::Value {
            let out = run(Command::new(args[0]).args(&args[1..]));
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
        };
        loop {
            let ports = json(&["bridge", "-n", &self.middle, "-j", "link", "show"]);
            let forwarding = !bridge
                || ports.as_array().is_some_and(|a| {
                    ["ri", "ro"].iter().all(|p| {
                        a.iter()
                            .any(|l| l["ifname"] == *p && l["state"] == "forwarding")
                    })
                });
            let carrier = self.links().iter().all(|(ns, dev)| {
                json(&["ip", "-n", ns, "-j", "link", "show", "dev", dev])[0]["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "LOWER_UP"))
            });
            if forwarding && carrier {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "links in {} not ready after 10 s: {ports}",
                self.middle
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Injects `frames` in order, `gap_us` apart, and attributes what left on the other side
    /// (and, with `netfilter`, what NFLOG reported in the middle namespace, after a conntrack
    /// flush there). With `probe`, first waits (up to 30 s) until an ARP request crosses.
    fn inject(
        &self,
        frames: &[Vec<u8>],
        inside: &[Prefix],
        netfilter: bool,
        gap_us: u64,
        probe: bool,
    ) -> Observed {
        self.inject_gaps(frames, inside, netfilter, gap_us, &[], probe)
    }

    /// [`Namespaces::inject`] with a gap of each frame's own where `gaps` has one.
    fn inject_gaps(
        &self,
        frames: &[Vec<u8>],
        inside: &[Prefix],
        netfilter: bool,
        gap_us: u64,
        gaps: &[u64],
        probe: bool,
    ) -> Observed {
        let sides: Vec<Side> = frames.iter().map(|f| side_of(f, inside)).collect();
        let injected: Vec<serde_json::Value> = frames
            .iter()
            .zip(&sides)
            .enumerate()
            .map(|(i, (f, side))| {
                let mut f = f.clone();
                if f.len() >= 12 {
                    let (src, dst) = match side {
                        Side::Inside => (MAC_INSIDE, MAC_OUTSIDE),
                        Side::Outside => (MAC_OUTSIDE, MAC_INSIDE),
                    };
                    f[0..6].copy_from_slice(&dst);
                    f[6..12].copy_from_slice(&src);
                }
                match gaps.get(i) {
                    Some(g) => {
                        serde_json::json!({ "side": side.name(), "hex": hex(&f), "gap_us": g })
                    }
                    None => serde_json::json!({ "side": side.name(), "hex": hex(&f) }),
                }
            })
            .collect();
        let probe_frame = probe.then(|| {
            hex(&dataplane::wire::builder::arp_request(
                dataplane::wire::MacAddr(MAC_INSIDE),
                std::net::Ipv4Addr::new(169, 254, 0, 1),
                std::net::Ipv4Addr::new(169, 254, 0, 2),
            ))
        });
        let cfg = serde_json::json!({
            "router": self.middle, "netfilter": netfilter, "probe": probe_frame,
            "inside_ns": self.inside, "inside_if": "vi",
            "outside_ns": self.outside, "outside_if": "vo",
            "group": NFLOG_GROUP, "gap_us": gap_us, "frames": injected,
            "causal": !netfilter,
        });
        let out = python(INJECT_PY, &cfg.to_string());
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "injector output is not JSON ({e}): {}",
                &out[..out.len().min(500)]
            )
        });
        assert_eq!(
            doc["ct_count_after_flush"], 0,
            "conntrack table not empty after the flush"
        );
        let events: Vec<Event> = doc["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(Event::from_json)
            .collect();
        attribute(frames, &sides, &events)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.inside, &self.middle, &self.outside] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// The Linux reference: the middle namespace bridges `ri` and `ro` with br_netfilter on.
pub struct LinuxBridge {
    pub ns: Namespaces,
}

impl LinuxBridge {
    /// Creates the namespaces, links and bridge, and sets the sysctls. Panics with the failing
    /// command's output when the kernel lacks something.
    pub fn create() -> LinuxBridge {
        let ns = Namespaces::create("nf");
        ns.ip_middle(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]);
        for port in ["ri", "ro"] {
            ns.ip_middle(&["link", "set", port, "master", "br0"]);
            ns.ip_middle(&[
                "link",
                "set",
                port,
                "type",
                "bridge_slave",
                "learning",
                "off",
                "flood",
                "on",
            ]);
        }
        ns.set_up();
        ns.ip_middle(&["link", "set", "br0", "up"]);
        let t = LinuxBridge { ns };
        for (k, v) in BRIDGE_SYSCTLS.iter().chain(CONNTRACK_SYSCTLS.iter()) {
            t.sysctl(k, v);
        }
        t.ns.wait_ready(true);
        t
    }

    /// Sets a sysctl in the router namespace and checks that it took.
    pub fn sysctl(&self, key: &str, value: &str) {
        let r = &self.ns.middle;
        run_ok(&mut ns_cmd(
            r,
            &["sysctl", "-qw", &format!("{key}={value}")],
        ));
        let got = run_ok(&mut ns_cmd(r, &["sysctl", "-n", key]));
        let got = String::from_utf8_lossy(&got.stdout);
        assert_eq!(got.trim(), value, "{key} did not take in {r}");
    }

    /// Loads the rule sets (iptables-save text; `None` loads an empty filter table, Linux's
    /// ACCEPT policy) with the state-logging rules appended as a mangle table.
    pub fn load_rules(&self, rules4: Option<&str>, rules6: Option<&str>) {
        let dir = tempfile::tempdir().expect("tempdir");
        // RAMPART_IPTABLES=legacy loads through iptables-legacy (x_tables) instead of the
        // distribution's default (iptables-nft here), to tell the kernel's semantics from the
        // nft translation's.
        let legacy = std::env::var("RAMPART_IPTABLES").is_ok_and(|v| v == "legacy");
        let (t4, t6) = if legacy {
            ("iptables-legacy-restore", "ip6tables-legacy-restore")
        } else {
            ("iptables-restore", "ip6tables-restore")
        };
        for (tool, rules, name) in [(t4, rules4, "rules.v4"), (t6, rules6, "rules.v6")] {
            let text = with_state_log(rules.unwrap_or(""));
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write rules");
            run_ok(&mut ns_cmd(&self.ns.middle, &[tool, p.to_str().unwrap()]));
        }
    }

    /// Loads ipset sets (`ipset save` text) into the router namespace with `ipset restore`.
    pub fn load_ipsets(&self, text: &str) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sets");
        std::fs::write(&p, text).expect("write sets");
        run_ok(&mut ns_cmd(
            &self.ns.middle,
            &["ipset", "restore", "-file", p.to_str().unwrap()],
        ));
    }

    /// A command run in the bridging namespace (`conntrack -L` there lists its connections).
    pub fn command(&self, args: &[&str]) -> Command {
        ns_cmd(&self.ns.middle, args)
    }

    /// Injects `frames` in order and reports, per frame, whether Linux forwarded it and which
    /// conntrack state it had. Conntrack entries left by an earlier run are flushed first.
    pub fn run(&self, frames: &[Vec<u8>], inside: &[Prefix]) -> Observed {
        self.ns.inject(frames, inside, true, GAP_US, false)
    }
}

/// `rampart run` in the middle namespace, bridging `ri` and `ro` through `net_af_packet` ports;
/// stopped on drop.
pub struct RampartDaemon {
    child: Option<std::process::Child>,
    socket: std::path::PathBuf,
    summary: std::path::PathBuf,
    dir: tempfile::TempDir,
    // Dropped last: the daemon stops before its links go.
    pub ns: Namespaces,
}

/// The most microseconds a frame may take to cross the daemon before the injector counts it
/// dropped and sends the next (it moves on as soon as the frame came out).
const DAEMON_GAP_US: u64 = 30_000;

impl RampartDaemon {
    /// Starts the daemon with the rule sets (iptables-save text) and waits until an ARP
    /// request crosses it.
    pub fn start(rules4: &str, rules6: &str) -> RampartDaemon {
        RampartDaemon::start_workers(rules4, rules6, 1)
    }

    /// [`RampartDaemon::start`] with `workers` workers (a queue pair each on both ports, the
    /// kernel's fanout spreading the frames over them; every worker on the second core).
    pub fn start_workers(rules4: &str, rules6: &str, workers: usize) -> RampartDaemon {
        let ns = Namespaces::create("rp");
        ns.set_up();
        ns.wait_ready(false);
        let dir = tempfile::tempdir().expect("tempdir");
        let (p4, p6) = (dir.path().join("rules.v4"), dir.path().join("rules.v6"));
        std::fs::write(&p4, rules4).expect("write rules");
        std::fs::write(&p6, rules6).expect("write rules");
        let prefix = unique("rpnf");
        let socket = dir.path().join("m.sock");
        let lcores: String = std::iter::once("0@0".to_string())
            .chain((1..=workers).map(|w| format!("{w}@1")))
            .collect::<Vec<_>>()
            .join(",");
        let cfg = format!(
            r#"
[eal]
args = {eal}
[[port]]
name = "inside"
device = "net_af_packet{prefix}i,iface=ri,qpairs={workers}"
[[port]]
name = "outside"
device = "net_af_packet{prefix}o,iface=ro,qpairs={workers}"
[bridge]
pairs = [["inside", "outside"]]
[rules]
ipv4 = "{p4}"
ipv6 = "{p6}"
[management]
socket = "{sock}"
[mempool]
mbufs = {mbufs}
cache = 64
[rings]
rx_desc = 512
tx_desc = 512
[workers]
count = {workers}
"#,
            eal = crate::toml_array(&crate::test_eal_args(&prefix, &lcores)),
            mbufs = 4096 * workers - 1,
            p4 = p4.display(),
            p6 = p6.display(),
            sock = socket.display(),
        );
        let cfg_path = dir.path().join("rampart.toml");
        std::fs::write(&cfg_path, cfg).expect("write config");
        let summary = dir.path().join("summary.json");
        let child = ns_cmd(&ns.middle, &[])
            .arg(crate::bin("rampart"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .arg("--summary-json")
            .arg(&summary)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
            .spawn()
            .expect("start rampart");
        let d = RampartDaemon {
            child: Some(child),
            socket,
            summary,
            dir,
            ns,
        };
        let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            d.ns.inject(&[], &[], false, DAEMON_GAP_US, true)
        }));
        if let Err(e) = probe {
            let err = std::fs::read_to_string(d.dir.path().join("stderr.log")).unwrap_or_default();
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "probe failed".into());
            panic!("no path through rampart: {why}\nrampart's stderr:\n{err}");
        }
        d
    }

    /// Forgets every connection (when the build tracks connections) and injects `frames`.
    pub fn run(&self, frames: &[Vec<u8>], inside: &[Prefix]) -> Observed {
        self.run_waiting(frames, inside, &[])
    }

    /// [`RampartDaemon::run`], waiting up to a second (not the usual gap) for each frame whose
    /// `forwarded` is true to come out before the next is sent: with several workers sharing a
    /// loaded core, a handed-over frame may take longer than the gap, and the next frame
    /// would overtake it (an ACK judged before the SYN/ACK it answers).
    pub fn run_waiting(
        &self,
        frames: &[Vec<u8>],
        inside: &[Prefix],
        forwarded: &[bool],
    ) -> Observed {
        let out = run(Command::new(crate::bin("rampart"))
            .arg("ctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(["conntrack", "flush"]));
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() || text.contains("not part of this build yet"),
            "conntrack flush failed: {text}"
        );
        let gaps: Vec<u64> = (0..frames.len())
            .map(|i| match forwarded.get(i) {
                Some(true) => 1_000_000,
                _ => DAEMON_GAP_US,
            })
            .collect();
        self.ns
            .inject_gaps(frames, inside, false, DAEMON_GAP_US, &gaps, false)
    }

    /// The management socket (`rampart ctl --socket`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Injects `frames` without forgetting any connection first (the connections of earlier
    /// injections go on).
    pub fn inject(&self, frames: &[Vec<u8>], inside: &[Prefix]) -> Observed {
        self.ns
            .inject_gaps(frames, inside, false, DAEMON_GAP_US, &[], false)
    }

    /// Stops the daemon with SIGTERM; it must exit 0. Returns its summary.
    pub fn stop(mut self) -> serde_json::Value {
        let mut child = self.child.take().expect("running");
        run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rampart did not stop on SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let err = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        assert!(status.success(), "rampart exited {status}: {err}");
        serde_json::from_str(&std::fs::read_to_string(&self.summary).expect("summary"))
            .expect("summary JSON")
    }
}

impl Drop for RampartDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `rules` with the state-logging rules ([`state_log_rules`]): appended as a mangle table, or,
/// when `rules` has a mangle table of its own, first in its FORWARD chain (a second `*mangle`
/// would replace the file's).
pub fn with_state_log(rules: &str) -> String {
    let log = state_log_rules();
    let Some(at) = rules.find("*mangle\n") else {
        return format!("{rules}{log}");
    };
    let mut off = at + "*mangle\n".len();
    for l in rules[off..].split_inclusive('\n') {
        if !(l.starts_with(':') || l.starts_with('#')) {
            break;
        }
        off += l.len();
    }
    let lines: String = log
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{}{lines}{}", &rules[..off], &rules[off..])
}

/// The mangle table that logs each forwarded packet's conntrack state to NFLOG, the state
/// as the prefix. mangle FORWARD runs before filter FORWARD, so dropped packets are logged too.
pub fn state_log_rules() -> String {
    let mut s = String::from(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
         :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for st in STATES {
        s += &format!(
            "-A FORWARD -m conntrack --ctstate {st} -j NFLOG --nflog-group {NFLOG_GROUP} \
             --nflog-prefix {st}\n"
        );
    }
    s + "COMMIT\n"
}

/// What one run through the Linux bridge or the daemon showed.
#[derive(Debug)]
pub struct Observed {
    pub outcomes: Vec<Outcome>,
    /// Frames that left the bridge or were logged but match no input frame (a harness fault or
    /// a packet Linux changed on the way), described.
    pub strays: Vec<String>,
    /// Frames the kernel refused to send (too short for Ethernet, too long for the MTU).
    pub send_errors: Vec<(usize, String)>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Runs a python3 script with `stdin`; returns its stdout, panics with stderr on failure.
fn python(script: &str, stdin: &str) -> String {
    use std::io::Write;
    let py = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(data.as_bytes());
    });
    let out = child.wait_with_output().expect("python3");
    let _ = writer.join();
    assert!(
        out.status.success(),
        "injector failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// One thing the injector saw while frame `slot` was the last one sent.
#[derive(Debug)]
enum Event {
    Egress {
        slot: usize,
        side: Side,
        data: Vec<u8>,
    },
    Nflog {
        slot: usize,
        state: String,
        data: Vec<u8>,
    },
    SendError {
        slot: usize,
        error: String,
    },
}

impl Event {
    fn from_json(v: &serde_json::Value) -> Event {
        let slot = v["slot"].as_u64().expect("slot") as usize;
        match v["kind"].as_str().expect("kind") {
            "egress" => Event::Egress {
                slot,
                side: if v["side"] == "inside" {
                    Side::Inside
                } else {
                    Side::Outside
                },
                data: unhex(v["hex"].as_str().unwrap()),
            },
            "nflog" => Event::Nflog {
                slot,
                state: v["state"].as_str().unwrap_or("?").to_string(),
                data: unhex(v["hex"].as_str().unwrap_or("")),
            },
            "send_error" => Event::SendError {
                slot,
                error: v["error"].as_str().unwrap_or("").to_string(),
            },
            k => panic!("unknown injector event {k}"),
        }
    }
}

/// A datagram's identity for reassembly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct DgId {
    family: u8,
    src: Vec<u8>,
    dst: Vec<u8>,
    id: u32,
    proto: u8,
}

/// An IP packet (or anything else) as the attribution sees it.
#[derive(Clone, Debug)]
enum L3 {
    /// A whole packet: family, upper protocol, addresses and upper-layer bytes (what survives
    /// reassembly and re-fragmentation), or the raw bytes of a non-IP frame.
    Whole(Vec<u8>),
    Fragment {
        dg: DgId,
        offset: usize,
        more: bool,
        data: Vec<u8>,
        /// The fragment's whole IP packet.
        exact: Vec<u8>,
    },
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn body(family: u8, proto: u8, src: &[u8], dst: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut v = vec![family, proto];
    v.extend_from_slice(src);
    v.extend_from_slice(dst);
    v.extend_from_slice(l4);
    v
}

/// Skips IPv6 extension headers (not Fragment) from `next` at the start of `b`.
fn walk_v6(mut next: u8, b: &[u8]) -> Option<(u8, &[u8])> {
    let mut at = 0;
    loop {
        match next {
            0 | 43 | 60 | 51 => {
                if at + 2 > b.len() {
                    return None;
                }
                let len = if next == 51 {
                    (usize::from(b[at + 1]) + 2) * 4
                } else {
                    (usize::from(b[at + 1]) + 1) * 8
                };
                next = b[at];
                at += len;
                if at > b.len() {
                    return None;
                }
            }
            _ => return Some((next, &b[at..])),
        }
    }
}

fn parse_v4(l3: &[u8]) -> Option<L3> {
    if l3.len() < 20 || l3[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(l3[0] & 15) * 4;
    let total = be16(l3, 2);
    if ihl < 20 || total < ihl || total > l3.len() {
        return None;
    }
    let l3 = &l3[..total];
    let frag = be16(l3, 6);
    let (more, offset) = (frag & 0x2000 != 0, (frag & 0x1fff) * 8);
    let (proto, src, dst) = (l3[9], &l3[12..16], &l3[16..20]);
    if more || offset > 0 {
        return Some(L3::Fragment {
            dg: DgId {
                family: 4,
                src: src.to_vec(),
                dst: dst.to_vec(),
                id: be16(l3, 4) as u32,
                proto,
            },
            offset,
            more,
            data: l3[ihl..].to_vec(),
            exact: l3.to_vec(),
        });
    }
    Some(L3::Whole(body(4, proto, src, dst, &l3[ihl..])))
}

fn parse_v6(l3: &[u8]) -> Option<L3> {
    if l3.len() < 40 || l3[0] >> 4 != 6 {
        return None;
    }
    let total = 40 + be16(l3, 4);
    if total > l3.len() {
        return None;
    }
    let l3 = &l3[..total];
    let (src, dst) = (&l3[8..24], &l3[24..40]);
    let (mut next, mut at) = (l3[6], 40);
    loop {
        if next == 44 {
            if at + 8 > l3.len() {
                return None;
            }
            let fo = be16(l3, at + 2);
            let (offset, more) = ((fo >> 3) * 8, fo & 1 != 0);
            let inner = l3[at];
            if offset == 0 && !more {
                // An atomic fragment (RFC 6946) is a whole packet.
                next = inner;
                at += 8;
                continue;
            }
            let id = u32::from_be_bytes(l3[at + 4..at + 8].try_into().unwrap());
            return Some(L3::Fragment {
                dg: DgId {
                    family: 6,
                    src: src.to_vec(),
                    dst: dst.to_vec(),
                    id,
                    proto: inner,
                },
                offset,
                more,
                data: l3[at + 8..].to_vec(),
                exact: l3.to_vec(),
            });
        }
        let (proto, rest) = walk_v6(next, &l3[at..])?;
        if proto == 44 {
            at = l3.len() - rest.len();
            next = 44;
            continue;
        }
        return Some(L3::Whole(body(6, proto, src, dst, rest)));
    }
}

/// An IP packet starting at its IP header.
fn parse_l3(ethertype: u16, l3: &[u8]) -> L3 {
    let parsed = match ethertype {
        0x0800 => parse_v4(l3),
        0x86dd => parse_v6(l3),
        _ => None,
    };
    parsed.unwrap_or_else(|| {
        let mut v = vec![0xff];
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(l3);
        L3::Whole(v)
    })
}

/// A frame's VLAN tags (as bytes) and its L3 view.
fn parse_frame_l3(frame: &[u8]) -> (Vec<u8>, L3) {
    let mut at = 12;
    let mut vlan = Vec::new();
    while at + 2 <= frame.len() {
        let et = be16(frame, at) as u16;
        if matches!(et, 0x8100 | 0x88a8 | 0x9100) && at + 6 <= frame.len() {
            vlan.extend_from_slice(&frame[at..at + 4]);
            at += 4;
            continue;
        }
        return (vlan, parse_l3(et, &frame[at + 2..]));
    }
    (vlan, L3::Whole(frame.to_vec()))
}

/// Fragments gathered by datagram; a datagram is complete when its pieces cover it without
/// gap or overlap and the last has no more-fragments flag. A datagram with overlapping pieces
/// never completes (Linux discards such a queue, RFC 5722).
#[derive(Default)]
struct Reassembly {
    pieces: HashMap<DgId, Vec<(usize, bool, Vec<u8>)>>,
}

impl Reassembly {
    /// Adds a piece; returns the datagram's whole-packet key when this piece completes it.
    fn add(&mut self, dg: &DgId, offset: usize, more: bool, data: &[u8]) -> Option<Vec<u8>> {
        let v = self.pieces.entry(dg.clone()).or_default();
        // A piece covering exactly the range of one already held is a duplicate and the first
        // one stays, whatever its bytes, as in Linux's fragment queues.
        if !v
            .iter()
            .any(|(o, _, d)| *o == offset && d.len() == data.len())
        {
            v.push((offset, more, data.to_vec()));
        }
        let mut sorted = v.clone();
        sorted.sort_by_key(|p| p.0);
        let mut bytes = Vec::new();
        for (i, (o, m, d)) in sorted.iter().enumerate() {
            if *o != bytes.len() {
                return None;
            }
            bytes.extend_from_slice(d);
            if !m {
                if i + 1 != sorted.len() {
                    return None;
                }
                self.pieces.remove(dg);
                return Some(match dg.family {
                    4 => body(4, dg.proto, &dg.src, &dg.dst, &bytes),
                    _ => {
                        let (proto, l4) = walk_v6(dg.proto, &bytes)?;
                        body(6, proto, &dg.src, &dg.dst, l4)
                    }
                });
            }
        }
        None
    }
}

/// What an input frame is known by.
struct Unit {
    vlan: Vec<u8>,
    /// The whole-packet key (for a fragment: its datagram's, when the capture holds all of it).
    body: Option<Vec<u8>>,
    /// A fragment's own packet, and its datagram (identity and which use of it).
    fragment: Option<(Vec<u8>, (DgId, u32))>,
}

/// An observed packet's key: a whole packet (or reassembled datagram), or a lone fragment.
#[derive(Debug)]
enum Key {
    Body(Vec<u8>, Vec<u8>),
    Exact(Vec<u8>, Vec<u8>),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (vlan, bytes, what) = match self {
            Key::Body(v, b) => (v, b, "packet"),
            Key::Exact(v, b) => (v, b, "fragment"),
        };
        if !vlan.is_empty() {
            write!(f, "vlan {} ", hex(vlan))?;
        }
        let addr = |b: &[u8]| -> String {
            match b.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(b).unwrap()).to_string(),
                16 => IpAddr::from(<[u8; 16]>::try_from(b).unwrap()).to_string(),
                _ => hex(b),
            }
        };
        match (self, bytes.first()) {
            (Key::Body(..), Some(4)) if bytes.len() >= 10 => write!(
                f,
                "IPv4 {what} proto {} {} > {}, {} L4 bytes",
                bytes[1],
                addr(&bytes[2..6]),
                addr(&bytes[6..10]),
                bytes.len() - 10
            ),
            (Key::Body(..), Some(6)) if bytes.len() >= 34 => write!(
                f,
                "IPv6 {what} proto {} {} > {}, {} L4 bytes",
                bytes[1],
                addr(&bytes[2..18]),
                addr(&bytes[18..34]),
                bytes.len() - 34
            ),
            _ => write!(
                f,
                "{what} of {} bytes: {}",
                bytes.len(),
                hex(&bytes[..bytes.len().min(24)])
            ),
        }
    }
}

/// Observed packets of one kind (egress or log) as keys with their slot; fragments are
/// reassembled first, and pieces of datagrams that never complete are kept as they are.
fn keys(items: Vec<(usize, Vec<u8>, L3, String)>) -> Vec<(usize, Key, String)> {
    let mut out = Vec::new();
    let mut re = Reassembly::default();
    // Pieces of datagrams not (yet) complete: slot, datagram, VLAN tags, packet, what.
    type Piece = (usize, DgId, Vec<u8>, Vec<u8>, String);
    let mut loose: Vec<Piece> = Vec::new();
    for (slot, vlan, l3, what) in items {
        match l3 {
            L3::Whole(b) => out.push((slot, Key::Body(vlan, b), what)),
            L3::Fragment {
                dg,
                offset,
                more,
                data,
                exact,
            } => match re.add(&dg, offset, more, &data) {
                Some(b) => {
                    loose.retain(|l| l.1 != dg);
                    out.push((slot, Key::Body(vlan, b), what));
                }
                None => loose.push((slot, dg, vlan, exact, what)),
            },
        }
    }
    out.extend(
        loose
            .into_iter()
            .map(|(slot, _, vlan, exact, what)| (slot, Key::Exact(vlan, exact), what)),
    );
    out.sort_by_key(|k| k.0);
    out
}

/// Attributes each observed packet to the latest input frame at or before its slot that it
/// matches and that has no such observation yet.
fn attribute(frames: &[Vec<u8>], sides: &[Side], events: &[Event]) -> Observed {
    // Input datagrams, numbered per identity: a capture may reuse an identification once a
    // datagram is complete, and each use is its own datagram.
    let mut dg_re = Reassembly::default();
    let mut generation: HashMap<DgId, u32> = HashMap::new();
    let mut dg_body: HashMap<(DgId, u32), Vec<u8>> = HashMap::new();
    let parsed: Vec<(Vec<u8>, L3)> = frames.iter().map(|f| parse_frame_l3(f)).collect();
    let mut units = Vec::with_capacity(parsed.len());
    for (vlan, l3) in parsed {
        match l3 {
            L3::Whole(b) => units.push(Unit {
                vlan,
                body: Some(b),
                fragment: None,
            }),
            L3::Fragment {
                dg,
                offset,
                more,
                data,
                exact,
            } => {
                let g = *generation.entry(dg.clone()).or_default();
                if let Some(b) = dg_re.add(&dg, offset, more, &data) {
                    dg_body.insert((dg.clone(), g), b);
                    generation.insert(dg.clone(), g + 1);
                }
                units.push(Unit {
                    vlan,
                    body: None,
                    fragment: Some((exact, (dg, g))),
                });
            }
        }
    }
    for u in &mut units {
        if let Some((_, id)) = &u.fragment {
            u.body = dg_body.get(id).cloned();
        }
    }

    let mut egress = Vec::new();
    let mut logs = Vec::new();
    let mut send_errors = Vec::new();
    for e in events {
        match e {
            Event::Egress { slot, side, data } => {
                let (vlan, l3) = parse_frame_l3(data);
                egress.push((*slot, vlan, l3, side.name().to_string()));
            }
            Event::Nflog { slot, state, data } => {
                let et = if data.first().map(|b| b >> 4) == Some(6) {
                    0x86dd
                } else {
                    0x0800
                };
                logs.push((*slot, Vec::new(), parse_l3(et, data), state.clone()));
            }
            Event::SendError { slot, error } => send_errors.push((*slot, error.clone())),
        }
    }

    let n = frames.len();
    let mut outcomes = vec![
        Outcome {
            forwarded: false,
            ct_state: None,
            reason: None,
        };
        n
    ];
    let mut strays = Vec::new();
    let mut seen_fwd = vec![false; n];
    let mut seen_log = vec![false; n];
    let matches = |u: &Unit, key: &Key, with_vlan: bool| match key {
        Key::Body(v, b) => (!with_vlan || &u.vlan == v) && u.body.as_ref() == Some(b),
        Key::Exact(v, x) => {
            (!with_vlan || &u.vlan == v) && u.fragment.as_ref().is_some_and(|f| &f.0 == x)
        }
    };
    for (slot, key, side) in keys(egress) {
        // A frame leaving on one side entered on the other.
        let from = if side == "inside" {
            Side::Outside
        } else {
            Side::Inside
        };
        let hit = (0..=slot.min(n.saturating_sub(1)))
            .rev()
            .find(|&j| !seen_fwd[j] && sides[j] == from && matches(&units[j], &key, true));
        match hit {
            Some(j) => {
                for k in same_datagram(&units, j, &key, slot) {
                    if !seen_fwd[k] && sides[k] == from {
                        seen_fwd[k] = true;
                        outcomes[k].forwarded = true;
                    }
                }
            }
            None => strays.push(format!("slot {slot}: left on the {side}: {key}")),
        }
    }
    for (slot, key, state) in keys(logs) {
        let hit = (0..=slot.min(n.saturating_sub(1)))
            .rev()
            .find(|&j| !seen_log[j] && matches(&units[j], &key, false));
        match hit {
            Some(j) => {
                for k in same_datagram(&units, j, &key, slot) {
                    if !seen_log[k] {
                        seen_log[k] = true;
                        outcomes[k].ct_state = Some(state.clone());
                    }
                }
            }
            None => strays.push(format!("slot {slot}: logged {state}: {key}")),
        }
    }
    Observed {
        outcomes,
        strays,
        send_errors,
    }
}

/// Frame `j` and, when `key` is a reassembled datagram, every other fragment of it sent up to
/// `slot`.
fn same_datagram(units: &[Unit], j: usize, key: &Key, slot: usize) -> Vec<usize> {
    match (key, &units[j].fragment) {
        (Key::Body(..), Some((_, dg))) => (0..units.len().min(slot + 1))
            .filter(|&k| units[k].fragment.as_ref().is_some_and(|f| &f.1 == dg))
            .collect(),
        _ => vec![j],
    }
}

/// Runs `rampart replay` on `pcap` and returns its per-packet outcomes.
pub fn rampart_replay(
    pcap: &Path,
    rules4: Option<&Path>,
    rules6: Option<&Path>,
    inside: &str,
) -> Vec<Outcome> {
    rampart_replay_with(pcap, rules4, rules6, inside, None, None)
}

/// [`rampart_replay`] with a configuration file (port names, pairs, the bridge's name) and an
/// ipset sets file (`--ipsets`).
pub fn rampart_replay_with(
    pcap: &Path,
    rules4: Option<&Path>,
    rules6: Option<&Path>,
    inside: &str,
    config: Option<&Path>,
    ipsets: Option<&Path>,
) -> Vec<Outcome> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, ver) = (dir.path().join("out.pcap"), dir.path().join("v.jsonl"));
    let mut cmd = Command::new(crate::bin("rampart"));
    cmd.arg("replay")
        .arg("--input")
        .arg(pcap)
        .arg("--output")
        .arg(&out)
        .arg("--verdicts")
        .arg(&ver)
        .args(["--inside", inside]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if let Some(r) = rules4 {
        cmd.arg("--rules").arg(r);
    }
    if let Some(r) = rules6 {
        cmd.arg("--rules6").arg(r);
    }
    if let Some(s) = ipsets {
        cmd.arg("--ipsets").arg(s);
    }
    run_ok(&mut cmd);
    std::fs::read_to_string(&ver)
        .expect("verdicts")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("verdict line");
            Outcome {
                forwarded: v["verdict"] == "forward",
                ct_state: v["ct_state"].as_str().map(str::to_string),
                reason: v["reason"].as_str().map(str::to_string),
            }
        })
        .collect()
}

/// A one-line description of a frame: protocol, addresses, ports, TCP flags, fragment.
pub fn summarize(frame: &[u8]) -> String {
    use dataplane::wire::{ip_proto, Fragment};
    let Ok(info) = dataplane::wire::parse_frame(frame) else {
        return format!("unparsed {} bytes", frame.len());
    };
    let Some(k) = info.flow else {
        return format!("ethertype {:#06x}", info.ethertype);
    };
    let (src, dst) = (k.src.to_std(), k.dst.to_std());
    let ep = |a: IpAddr, p: u16| match a {
        IpAddr::V4(a) => format!("{a}:{p}"),
        IpAddr::V6(a) => format!("[{a}]:{p}"),
    };
    let frag = match info.frag {
        Fragment::None => String::new(),
        Fragment::First { id, .. } => format!(" frag id={id:#x} first"),
        Fragment::Later {
            id, offset_bytes, ..
        } => format!(" frag id={id:#x} off={offset_bytes}"),
    };
    let l4 = info.l4_bytes(frame).unwrap_or(&[]);
    match k.proto {
        ip_proto::TCP if l4.len() >= 14 => {
            let f = l4[13];
            let flags: String = [
                (0x02, 'S'),
                (0x10, '.'),
                (0x08, 'P'),
                (0x01, 'F'),
                (0x04, 'R'),
            ]
            .iter()
            .filter(|(b, _)| f & b != 0)
            .map(|(_, c)| *c)
            .collect();
            format!(
                "TCP {} > {} [{flags}] len {}{frag}",
                ep(src, k.src_port),
                ep(dst, k.dst_port),
                l4.len().saturating_sub(usize::from(l4[12] >> 4) * 4)
            )
        }
        ip_proto::UDP => format!(
            "UDP {} > {}{frag}",
            ep(src, k.src_port),
            ep(dst, k.dst_port)
        ),
        ip_proto::ICMP | ip_proto::ICMPV6 if l4.len() >= 2 => {
            format!("ICMP {src} > {dst} type {} code {}{frag}", l4[0], l4[1])
        }
        p => format!("proto {p} {src} > {dst}{frag}"),
    }
}

/// Which parts of two outcomes differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Verdict,
    State,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Verdict => "verdict",
            Field::State => "state",
        })
    }
}

/// The fields in which `linux` and `rampart` differ (`State` only when `states` is set).
pub fn differences(linux: &Outcome, rampart: &Outcome, states: bool) -> Vec<Field> {
    let mut v = Vec::new();
    if linux.forwarded != rampart.forwarded {
        v.push(Field::Verdict);
    }
    if states && linux.ct_state != rampart.ct_state {
        v.push(Field::State);
    }
    v
}

/// A per-packet table: index, packet, the two outcomes (Linux's and Rampart's) and a note (the differing fields or the
/// allow-list reason).
pub fn table(columns: [&str; 2], rows: &[(usize, String, &Outcome, &Outcome, String)]) -> String {
    let w = rows.iter().map(|r| r.1.len()).max().unwrap_or(6).max(6);
    let mut s = format!(
        "{:>4}  {:<w$}  {:<17}  {:<32}  note\n",
        "idx", "packet", columns[0], columns[1]
    );
    for (i, what, l, r, note) in rows {
        s += &format!(
            "{i:>4}  {what:<w$}  {:<17}  {:<32}  {note}\n",
            l.to_string(),
            r.to_string()
        );
    }
    s
}

/// The injector: enters the namespaces through setns(2), flushes conntrack and binds the NFLOG
/// group over ctnetlink/nfnetlink_log, opens one AF_PACKET socket on each outer veth end, then
/// sends the frames one at a time from one CPU and, after each, collects for `gap_us` what
/// leaves the bridge and what NFLOG reports, tagged with the index of the last frame sent.
const INJECT_PY: &str = r#"
import ctypes, json, os, select, socket, struct, sys, time

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)

def enter(ns):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns %s: %s" % (ns, os.strerror(e)))
    finally:
        os.close(fd)

NETLINK_NETFILTER, NLMSG_ERROR = 12, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
SUBSYS_CTNETLINK, SUBSYS_ULOG = 1, 4
IPCTNL_MSG_CT_DELETE = 2
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_TIMEOUT, NFULA_CFG_QTHRESH = 1, 2, 4, 5
NFULNL_CFG_CMD_BIND, NFULNL_COPY_PACKET = 1, 2
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10
SOL_PACKET, PACKET_AUXDATA, PACKET_IGNORE_OUTGOING, SO_RCVBUFFORCE = 263, 8, 23, 33
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40

def attr(t, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, t) + payload + b"\0" * (-n % 4)

def messages(data):
    at = 0
    while at + 16 <= len(data):
        n, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, at)
        if n < 16:
            break
        yield mtype, seq, data[at + 16:at + n]
        at += (n + 3) & ~3

class Netlink:
    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 24)
        self.s.bind((0, 0))
        self.seq = 0

    def request(self, subsys, msg, res_id, attrs):
        self.seq += 1
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(res_id)) + attrs
        hdr = struct.pack("=IHHII", 16 + len(body), (subsys << 8) | msg,
                          NLM_F_REQUEST | NLM_F_ACK, self.seq, 0)
        self.s.send(hdr + body)
        while True:
            for mtype, seq, payload in messages(self.s.recv(1 << 16)):
                if mtype == NLMSG_ERROR and seq == self.seq:
                    err = struct.unpack_from("=i", payload)[0]
                    if err != 0:
                        raise OSError(-err, "nfnetlink %d/%d: %s" % (subsys, msg, os.strerror(-err)))
                    return

def nflog(payload):
    at, prefix, pkt = 4, "?", b""
    while at + 4 <= len(payload):
        n, t = struct.unpack_from("=HH", payload, at)
        if n < 4:
            break
        v = payload[at + 4:at + n]
        t &= 0x7fff
        if t == NFULA_PREFIX:
            prefix = v.rstrip(b"\0").decode()
        elif t == NFULA_PAYLOAD:
            pkt = v
        at += (n + 3) & ~3
    return prefix, pkt

cfg = json.load(sys.stdin)
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
count, nl = 0, None
if cfg["netfilter"]:
    enter(cfg["router"])
    nl = Netlink()
    nl.request(SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, 0, b"")
    for _ in range(100):
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            count = int(f.read())
        if count == 0:
            break
        time.sleep(0.01)
    group = cfg["group"]
    nl.request(SUBSYS_ULOG, NFULNL_MSG_CONFIG, group, attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])))
    nl.request(SUBSYS_ULOG, NFULNL_MSG_CONFIG, group,
               attr(NFULA_CFG_MODE, struct.pack(">IBB", 0xffff, NFULNL_COPY_PACKET, 0))
               + attr(NFULA_CFG_QTHRESH, struct.pack(">I", 1))
               + attr(NFULA_CFG_TIMEOUT, struct.pack(">I", 1)))
    nl.s.setblocking(False)

socks = {}
for side in ("inside", "outside"):
    enter(cfg[side + "_ns"])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 24)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((cfg[side + "_if"], 0))
    s.setblocking(False)
    while True:
        try:
            s.recv(65536)
        except BlockingIOError:
            break
    socks[side] = s


events = []
names = {socks["inside"].fileno(): "inside", socks["outside"].fileno(): "outside"}

def receive(s):
    # The kernel takes the outer VLAN tag off every received frame and reports it beside the
    # data: put it back where it was.
    data, anc, _flags, _addr = s.recvmsg(1 << 17, socket.CMSG_SPACE(20))
    for level, kind, value in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= 20:
            status, _len, _snap, _mac, _net, tci, tpid = struct.unpack_from("=IIIHHHH", value)
            if status & TP_STATUS_VLAN_VALID:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = 0x8100
                data = data[:12] + struct.pack(">HH", tpid, tci) + data[12:]
    return data

def collect(slot, until, first_egress=False):
    while True:
        left = until - time.monotonic()
        watched = [socks["inside"], socks["outside"]] + ([nl.s] if nl else [])
        ready, _, _ = select.select(watched, [], [], max(left, 0))
        if not ready:
            if left <= 0:
                return
            continue
        for s in ready:
            while True:
                try:
                    data = s.recv(1 << 17) if nl and s is nl.s else receive(s)
                except BlockingIOError:
                    break
                if nl and s is nl.s:
                    for mtype, _seq, payload in messages(data):
                        if mtype == (SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                            prefix, pkt = nflog(payload)
                            events.append({"slot": slot, "kind": "nflog", "state": prefix, "hex": pkt.hex()})
                        elif mtype == NLMSG_ERROR and struct.unpack_from("=i", payload)[0] != 0:
                            raise OSError("nfnetlink error while logging")
                else:
                    events.append({"slot": slot, "kind": "egress", "side": names[s.fileno()], "hex": data.hex()})
                    if first_egress:
                        return

def drain():
    for s in socks.values():
        while True:
            try:
                s.recv(1 << 17)
            except BlockingIOError:
                break

if cfg["probe"]:
    # Wait until a frame crosses (a daemon starting up), then forget what crossed.
    probe = bytes.fromhex(cfg["probe"])
    deadline = time.monotonic() + 30
    crossed = False
    while not crossed:
        if time.monotonic() > deadline:
            raise SystemExit("nothing crossed from inside to outside within 30 s")
        socks["inside"].send(probe)
        until = time.monotonic() + 0.1
        while not crossed and time.monotonic() < until:
            r, _, _ = select.select([socks["outside"]], [], [], 0.02)
            if r:
                try:
                    crossed = receive(socks["outside"])[12:] == probe[12:]
                except BlockingIOError:
                    pass
    time.sleep(0.05)
    drain()

frames = cfg["frames"]
for i, f in enumerate(frames):
    gap = f.get("gap_us", cfg["gap_us"]) / 1e6
    t0 = time.monotonic()
    try:
        socks[f["side"]].send(bytes.fromhex(f["hex"]))
    except OSError as e:
        events.append({"slot": i, "kind": "send_error", "error": str(e)})
    if cfg["causal"]:
        # A user-space forwarder may be descheduled for longer than the gap; the next frame
        # waits until this one came out (or the gap ran out: dropped), so frames on the two
        # ports are never seen out of order, as in traffic where replies answer what arrived.
        collect(i, t0 + gap, first_egress=True)
        collect(i, time.monotonic() + 0.0005)
    else:
        collect(i, t0 + gap)
# Stragglers: collect until 200 ms pass with nothing new (at most 2 s).
for _ in range(10):
    seen = len(events)
    collect(max(len(frames) - 1, 0), time.monotonic() + 0.2)
    if len(events) == seen:
        break
json.dump({"ct_count_after_flush": count, "events": events}, sys.stdout)
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use dataplane::wire::tcp::Flags;

    fn spec_v4(l4: L4Spec) -> FrameSpec {
        FrameSpec::new(
            IpSpec::v4([10, 1, 0, 2].into(), [198, 51, 100, 20].into()),
            l4,
        )
    }

    fn spec_v6(l4: L4Spec) -> FrameSpec {
        FrameSpec::new(
            IpSpec::v6(
                "fd00:1::2".parse().unwrap(),
                "2001:db8:1::20".parse().unwrap(),
            ),
            l4,
        )
    }

    fn egress(slot: usize, side: Side, frame: &[u8]) -> Event {
        let mut data = frame.to_vec();
        data[0..12].copy_from_slice(&[9; 12]); // MACs are not part of the key
        Event::Egress { slot, side, data }
    }

    fn log(slot: usize, state: &str, frame: &[u8]) -> Event {
        Event::Nflog {
            slot,
            state: state.into(),
            data: frame[14..].to_vec(),
        }
    }

    #[test]
    fn identical_frames_are_told_apart_by_slot() {
        let syn = spec_v4(L4Spec::tcp(1, 80, Flags::SYN)).build();
        let frames = vec![syn.clone(), syn.clone()];
        let sides = [Side::Inside, Side::Inside];
        // Linux dropped the first copy and forwarded the second, both seen as NEW.
        let events = [
            log(0, "NEW", &syn),
            log(1, "NEW", &syn),
            egress(1, Side::Outside, &syn),
        ];
        let r = attribute(&frames, &sides, &events);
        assert_eq!(r.strays, Vec::<String>::new());
        assert!(!r.outcomes[0].forwarded && r.outcomes[1].forwarded);
        assert_eq!(r.outcomes[0].ct_state.as_deref(), Some("NEW"));
        assert_eq!(r.outcomes[1].ct_state.as_deref(), Some("NEW"));
    }

    #[test]
    fn a_frame_out_on_the_side_it_came_in_is_a_stray() {
        let syn = spec_v4(L4Spec::tcp(1, 80, Flags::SYN)).build();
        let r = attribute(
            std::slice::from_ref(&syn),
            &[Side::Inside],
            &[egress(0, Side::Inside, &syn)],
        );
        assert!(!r.outcomes[0].forwarded);
        assert_eq!(r.strays.len(), 1, "{:?}", r.strays);
        // A packet nobody sent is a stray too.
        let other = spec_v4(L4Spec::tcp(2, 80, Flags::SYN)).build();
        let r = attribute(&[syn], &[Side::Inside], &[log(0, "NEW", &other)]);
        assert_eq!(
            (r.outcomes[0].ct_state.as_deref(), r.strays.len()),
            (None, 1)
        );
    }

    /// Linux reassembles fragments (out of order here) and logs and forwards the whole datagram
    /// (IPv6: without its Fragment header); every fragment gets that outcome.
    #[test]
    fn reassembled_datagrams_map_back_to_their_fragments() {
        for (spec, whole_ident) in [
            (spec_v4(L4Spec::udp(5, 7000, &[7; 900])), 0x77),
            (spec_v6(L4Spec::udp(5, 7000, &[7; 900])), 0x77),
        ] {
            let spec = match spec.ip.clone() {
                IpSpec::V4 { src, dst, .. } => FrameSpec {
                    ip: IpSpec::V4 {
                        src,
                        dst,
                        ttl: 64,
                        ident: whole_ident,
                        dont_frag: false,
                        options: vec![],
                    },
                    ..spec
                },
                IpSpec::V6 { src, dst, .. } => FrameSpec {
                    ip: IpSpec::V6 {
                        src,
                        dst,
                        hop_limit: 64,
                        ident: u32::from(whole_ident),
                        ext: vec![],
                    },
                    ..spec
                },
            };
            let frags = spec.fragments(400);
            assert_eq!(frags.len(), 3);
            let frames = vec![frags[2].clone(), frags[0].clone(), frags[1].clone()];
            let whole = spec.build();
            let sides = [Side::Outside; 3];
            let events = [
                log(2, "ESTABLISHED", &whole),
                egress(2, Side::Inside, &whole),
            ];
            let r = attribute(&frames, &sides, &events);
            assert!(r.strays.is_empty(), "{:?}", r.strays);
            for o in &r.outcomes {
                assert!(o.forwarded);
                assert_eq!(o.ct_state.as_deref(), Some("ESTABLISHED"));
            }
            // Re-fragmented on the way out: the pieces are reassembled before matching.
            let events: Vec<Event> = frags.iter().map(|f| egress(2, Side::Inside, f)).collect();
            let r = attribute(&frames, &sides, &events);
            assert!(r.strays.is_empty() && r.outcomes.iter().all(|o| o.forwarded));
            // Nothing out, nothing logged: all dropped, no state.
            let r = attribute(&frames, &sides, &[]);
            assert!(r
                .outcomes
                .iter()
                .all(|o| !o.forwarded && o.ct_state.is_none()));
        }
    }

    #[test]
    fn duplicate_fragment_ranges_keep_the_first_and_overlaps_never_complete() {
        let dg = DgId {
            family: 4,
            src: vec![1, 1, 1, 1],
            dst: vec![2, 2, 2, 2],
            id: 1,
            proto: 17,
        };
        let mut re = Reassembly::default();
        assert_eq!(re.add(&dg, 8, false, &[2; 8]), None);
        assert_eq!(re.add(&dg, 8, false, &[3; 8]), None);
        let b = re.add(&dg, 0, true, &[1; 8]).unwrap();
        assert_eq!(&b[10..], &[[1u8; 8], [2; 8]].concat()[..]);
        let mut re = Reassembly::default();
        re.add(&dg, 0, true, &[1; 16]);
        assert_eq!(re.add(&dg, 8, false, &[2; 16]), None);
    }

    #[test]
    fn vlan_tags_are_part_of_an_egress_key() {
        let mut tagged = spec_v4(L4Spec::udp(5, 53, b"q"));
        tagged.vlans[0] = Some(dataplane::wire::VlanTag {
            tpid: 0x8100,
            tci: 42,
        });
        let tagged = tagged.build();
        let plain = spec_v4(L4Spec::udp(5, 53, b"q")).build();
        let r = attribute(
            std::slice::from_ref(&tagged),
            &[Side::Inside],
            &[egress(0, Side::Outside, &plain)],
        );
        assert!(!r.outcomes[0].forwarded && r.strays.len() == 1);
        let r = attribute(
            std::slice::from_ref(&tagged),
            &[Side::Inside],
            &[egress(0, Side::Outside, &tagged), log(0, "NEW", &plain)],
        );
        assert!(r.outcomes[0].forwarded && r.strays.is_empty());
        assert_eq!(r.outcomes[0].ct_state.as_deref(), Some("NEW"));
    }

    #[test]
    fn state_log_rules_cover_every_state_once() {
        let text = state_log_rules();
        for st in STATES {
            assert_eq!(text.matches(&format!("--ctstate {st} ")).count(), 1);
        }
        assert!(text.starts_with("*mangle\n") && text.ends_with("COMMIT\n"));
    }
}
