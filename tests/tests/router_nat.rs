//! Rampart as a NAT gateway between two network namespaces (router mode on `net_af_packet`
//! ports), with real clients: ping to and through it, `curl` out through MASQUERADE (the server
//! sees the gateway's address), `curl` in through a DNAT port forward, UDP request/response
//! through NAT, a TTL-expiring probe, and exhaustion of a tiny SNAT port range. The same
//! scenarios through a Linux router namespace with the same rules give the same addresses.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::topo::{in_ns, RouterTopology};
use tests::{bin, root_or_skip, run, run_ok, test_eal_args, toml_array, unique};

/// The rules of both routers; `OUT` is the outside interface's name. The TCP port forward is
/// let through by `--ctstate DNAT` (as firewalld's forward ports are), the UDP one by a rule on
/// the translated destination.
fn rules(out: &str, inside_net: u8) -> String {
    format!(
        "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 203.0.113.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.{inside_net}.0.2:8000
-A PREROUTING -d 203.0.113.1/32 -p udp -m udp --dport 5300 -j DNAT --to-destination 10.{inside_net}.0.2:5300
-A POSTROUTING -s 10.{inside_net}.0.0/24 -o {out} -p udp -m udp --dport 6000 -j SNAT --to-source 203.0.113.1:20000-20001
-A POSTROUTING -s 10.{inside_net}.0.0/24 -o {out} -j MASQUERADE
-A POSTROUTING -s 10.{inside_net}.0.0/24 -d 10.{inside_net}.0.2/32 -p tcp -m tcp --dport 8000 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p icmp -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -d 198.51.100.9/32 -p icmp -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -s 10.{inside_net}.0.0/24 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -d 10.{inside_net}.0.2/32 -p udp -m udp --dport 5300 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT
COMMIT
"
    )
}

/// A server in a namespace that prints, one line per request, the address it came from.
const TCP_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("FROM", self.client_address[0], self.client_address[1], flush=True)
        body = b"hello from the server\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

const UDP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(2048)
    print("FROM", peer[0], peer[1], flush=True)
    s.sendto(b"answer:" + data, peer)
"#;

/// Sends one datagram from `sport` (0: any) and waits for the answer; prints it.
const UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[3])))
s.settimeout(2)
for _ in range(3):
    s.sendto(b"query", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode(), flush=True)
        break
    except socket.timeout:
        pass
else:
    sys.exit(1)
"#;

struct Server {
    child: Child,
}

impl Server {
    fn start(ns: &str, script: &str, addr: &str, port: u16) -> Server {
        let child = in_ns(ns, &["python3", "-c", script, addr, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        std::thread::sleep(Duration::from_millis(400));
        Server { child }
    }

    /// The (address, port) of every request so far (stops the server).
    fn clients(mut self) -> Vec<(String, u16)> {
        let _ = self.child.kill();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = self.child.wait();
        out.lines()
            .filter_map(|l| {
                let mut w = l.strip_prefix("FROM ")?.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// af_packet devices of two Rampart processes at once can clash on their PACKET_FANOUT group:
/// the tests of this file run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Rampart {
    child: Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Rampart {
    /// Rampart in router mode on the topology's ports, with `workers` workers (each on its
    /// own CPU when there are two).
    fn start(t: &RouterTopology, rules_text: &str, extra: &str, workers: u16) -> Rampart {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("rules"), rules_text).unwrap();
        let prefix = unique("rnat");
        let cfg = format!(
            "mode = \"router\"\n[eal]\nargs = {eal}\n{ports}\n[rules]\nipv4 = \"{rules}\"\n\
             [management]\nsocket = \"{sock}\"\n[mempool]\nmbufs = 4095\ncache = 64\n\
             [rings]\nrx_desc = 512\ntx_desc = 512\n[conntrack]\nmax = 65536\n\
             [workers]\ncount = {workers}\n\
             [[route]]\nprefix = \"198.51.100.0/24\"\nvia = \"203.0.113.2\"\n{extra}",
            extra = extra,
            eal = toml_array(&test_eal_args(
                &prefix,
                if workers > 1 {
                    "0@0,1@0,2@1"
                } else {
                    "0@0,1@1"
                }
            )),
            ports = t
                .rampart_ports(&prefix)
                .replace("qpairs=1", &format!("qpairs={workers}")),
            rules = p("rules").display(),
            sock = p("m.sock").display(),
        );
        std::fs::write(p("cfg.toml"), cfg).unwrap();
        let child = Command::new(bin("rampart"))
            .args(["run", "--config"])
            .arg(p("cfg.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut r = Rampart {
            child,
            socket: p("m.sock"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&r.socket).is_err() {
            if let Some(s) = r.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = r.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("rampart exited {s} at start:\n{err}");
            }
            assert!(Instant::now() < deadline, "rampart did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn ctl(&self, args: &[&str]) -> String {
        let o = run(Command::new(bin("rampart"))
            .arg("ctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(args));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Rampart {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(t: &RouterTopology, from_inside: bool, url: &str) -> String {
    // A server that is still binding its port refuses the first connection: retry that too.
    let args = [
        "curl",
        "-sS",
        "--max-time",
        "5",
        "--retry",
        "4",
        "--retry-connrefused",
        url,
    ];
    let mut c = if from_inside {
        t.inside_cmd(&args)
    } else {
        t.outside_cmd(&args)
    };
    let o = run(&mut c);
    assert!(
        o.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn udp_ask(t: &RouterTopology, from_inside: bool, dst: &str, port: u16, sport: u16) -> bool {
    let (p, s) = (port.to_string(), sport.to_string());
    let args = ["python3", "-c", UDP_CLIENT, dst, &p, &s];
    let mut c = if from_inside {
        t.inside_cmd(&args)
    } else {
        t.outside_cmd(&args)
    };
    let o = run(&mut c);
    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("answer:query")
}

/// What the servers saw in one run of the scenarios.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// Source address of the inside client's HTTP request at the outside server.
    http_out: String,
    /// Source address and port of the outside client's request at the inside server (DNAT).
    http_in: String,
    /// Source address of the inside client's UDP request at the outside server.
    udp_out: String,
    /// Source of the outside client's UDP request at the inside server (DNAT).
    udp_in: String,
    /// Ports the SNAT range 20000-20001 gave three clients' flows (sorted), and whether the
    /// third got through.
    range_ports: Vec<u16>,
    third_answered: bool,
    /// Hairpin: the inside host reaching its own service through the public address is seen
    /// coming from the router's inside address (the hairpin MASQUERADE).
    hairpin_from_router: bool,
    /// A probe whose TTL runs out one hop beyond the gateway: ping shows the time exceeded
    /// only if the quoted echo request was translated back to its own identifier.
    ttl_beyond: bool,
    /// A REJECT in FORWARD: ping's report of the error, and whether it came from the
    /// gateway's own (inside) address rather than the rejected packet's destination.
    rejected: String,
    rejected_by_router: bool,
}

/// Makes the outside host a router towards 198.51.100.0/24 (a link of its own), so that a probe
/// with TTL 2 expires there, one hop beyond the gateway.
fn outside_forwards(t: &RouterTopology) {
    for args in [
        &["sysctl", "-qw", "net.ipv4.ip_forward=1"][..],
        &[
            "ip", "link", "add", "far0", "type", "veth", "peer", "name", "far1",
        ],
        &["ip", "link", "set", "far0", "up"],
        &["ip", "link", "set", "far1", "up"],
        &["ip", "route", "add", "198.51.100.0/24", "dev", "far0"],
    ] {
        let o = run(&mut t.outside_cmd(args));
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `range`: also the two-port SNAT range (one worker only: with several, each worker owns
/// its own share of the range's ports, and flows between the same two hosts share a worker).
fn scenarios(t: &RouterTopology, range: bool) -> Seen {
    let a = t.addressing;
    assert!(
        t.wait_ping(&a.server_v4(), Duration::from_secs(15)),
        "no echo reply through the gateway"
    );
    // HTTP out through MASQUERADE.
    let srv = Server::start(&t.outside, TCP_SERVER, &a.server_v4(), 8081);
    let body = curl(t, true, &format!("http://{}:8081/", a.server_v4()));
    assert!(body.contains("hello from the server"), "{body}");
    let http_out = srv.clients().first().expect("a request").0.clone();
    // HTTP in through the DNAT port forward.
    let srv = Server::start(&t.inside, TCP_SERVER, &a.inside_host_v4(), 8000);
    let body = curl(t, false, "http://203.0.113.1:8080/");
    assert!(body.contains("hello from the server"), "{body}");
    let http_in = srv.clients().first().expect("a request").0.clone();
    // UDP out and in.
    let srv = Server::start(&t.outside, UDP_SERVER, &a.server_v4(), 5353);
    assert!(udp_ask(t, true, &a.server_v4(), 5353, 41000), "UDP out");
    let udp_out = srv.clients().first().expect("a datagram").0.clone();
    let srv = Server::start(&t.inside, UDP_SERVER, &a.inside_host_v4(), 5300);
    assert!(udp_ask(t, false, "203.0.113.1", 5300, 42000), "UDP in");
    let udp_in = srv.clients().first().expect("a datagram").0.clone();
    // A two-port SNAT range: two flows fit, the third is refused.
    let (mut range_ports, mut third_answered) = (Vec::new(), false);
    if range {
        let srv = Server::start(&t.outside, UDP_SERVER, &a.server_v4(), 6000);
        assert!(udp_ask(t, true, &a.server_v4(), 6000, 43001));
        assert!(udp_ask(t, true, &a.server_v4(), 6000, 43002));
        third_answered = udp_ask(t, true, &a.server_v4(), 6000, 43003);
        range_ports = srv.clients().iter().map(|c| c.1).collect();
        range_ports.sort_unstable();
        range_ports.dedup();
    }
    // Hairpin: the inside host's own service through the public address.
    let srv = Server::start(&t.inside, TCP_SERVER, &a.inside_host_v4(), 8000);
    let body = curl(t, true, "http://203.0.113.1:8080/");
    assert!(body.contains("hello from the server"), "{body}");
    let hairpin_from_router = srv.clients().first().expect("a request").0 == a.router_inside_v4();
    // A REJECT rule in FORWARD answers with the gateway's own address.
    let o = run(&mut t.inside_cmd(&["ping", "-c", "1", "-W", "2", "198.51.100.9"]));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("From ")).unwrap_or("");
    let rejected = line.split("icmp_seq=1 ").nth(1).unwrap_or(line).to_string();
    let rejected_by_router = line.starts_with(&format!("From {} ", a.router_inside_v4()));
    // TTL 2: the gateway forwards (TTL 1), the outside host's forwarding expires it.
    outside_forwards(t);
    let o = run(&mut t.inside_cmd(&["ping", "-c", "1", "-t", "2", "-W", "2", "198.51.100.7"]));
    let text = String::from_utf8_lossy(&o.stdout);
    let ttl_beyond = text.contains("Time to live exceeded") && text.contains(&a.server_v4());
    Seen {
        http_out,
        http_in,
        udp_out,
        udp_in,
        range_ports,
        third_answered,
        hairpin_from_router,
        ttl_beyond,
        rejected,
        rejected_by_router,
    }
}

#[test]
fn rampart_is_a_nat_gateway_and_agrees_with_linux() {
    if !root_or_skip("rampart_is_a_nat_gateway_and_agrees_with_linux") {
        return;
    }
    for tool in ["curl", "python3", "ping"] {
        if !run(Command::new("which").arg(tool)).status.success() {
            panic!("{tool} is missing (scripts/setup.sh installs it)");
        }
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = 71;
    let rampart = {
        let t = RouterTopology::for_rampart(net);
        let r = Rampart::start(&t, &rules("outside", net), "", 1);
        let a = t.addressing;
        // The gateway answers ping on its inside address (INPUT accepts ICMP).
        assert!(
            t.wait_ping(&a.router_inside_v4(), Duration::from_secs(15)),
            "no echo reply from the gateway"
        );
        let seen = scenarios(&t, true);
        // A probe whose TTL runs out at the gateway gets time exceeded from it.
        let o = run(&mut t.inside_cmd(&["ping", "-c", "1", "-t", "1", "-W", "2", &a.server_v4()]));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("Time to live exceeded") && text.contains(&a.router_inside_v4()),
            "{text}"
        );
        // IPv6 is routed (no rules for it: not filtered, not translated).
        assert!(
            t.wait_ping(&a.server_v6(), Duration::from_secs(15)),
            "no IPv6 echo reply through the gateway"
        );
        let nat = r.ctl(&["nat", "list"]);
        assert!(nat.contains("[SNAT]") && nat.contains("[DNAT]"), "{nat}");
        let stats = r.ctl(&["--json", "stats"]);
        assert!(
            stats.contains("nat_exhausted"),
            "the refused flow is counted: {stats}"
        );
        let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
        let router = &v["router"];
        for k in ["arp_answered", "echo_replies", "icmp_sent", "neighbours"] {
            assert!(router[k].as_u64().unwrap_or(0) > 0, "{k}: {router}");
        }
        seen
    };
    assert_eq!(
        rampart.http_out, "203.0.113.1",
        "MASQUERADE to the outside address"
    );
    assert_eq!(
        rampart.http_in, "203.0.113.2",
        "DNAT keeps the client's address"
    );
    assert_eq!(rampart.udp_out, "203.0.113.1");
    assert_eq!(rampart.udp_in, "203.0.113.2");
    assert_eq!(rampart.range_ports, [20000, 20001], "{rampart:?}");
    assert!(!rampart.third_answered, "a full range refuses new flows");
    assert!(rampart.hairpin_from_router, "{rampart:?}");
    assert_eq!(
        rampart.rejected, "Destination Host Prohibited",
        "{rampart:?}"
    );
    assert!(rampart.rejected_by_router, "{rampart:?}");
    assert!(
        rampart.ttl_beyond,
        "time exceeded from beyond the gateway, quote translated"
    );

    let linux = {
        let t = RouterTopology::with_linux_router(net + 1, Some(&rules("ro", net + 1)), None);
        let r = t.router.clone().expect("a router namespace");
        let o = run(&mut in_ns(
            &r,
            &[
                "ip",
                "route",
                "add",
                "198.51.100.0/24",
                "via",
                "203.0.113.2",
            ],
        ));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        scenarios(&t, true)
    };
    assert_eq!(rampart, linux, "Rampart and Linux translate alike");
}

#[test]
fn two_workers_route_and_translate() {
    if !root_or_skip("two_workers_route_and_translate") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = 74;
    let t = RouterTopology::for_rampart(net);
    // Two workers: replies to NAT addresses are steered to the worker owning their port (the
    // devices spread flows over both queues by their own hash), and neighbour answers are
    // shared between the workers.
    let r = Rampart::start(&t, &rules("outside", net), "", 2);
    let seen = scenarios(&t, false);
    assert_eq!(seen.http_out, "203.0.113.1");
    assert_eq!(seen.http_in, "203.0.113.2");
    assert_eq!(
        (seen.udp_out.as_str(), seen.udp_in.as_str()),
        ("203.0.113.1", "203.0.113.2")
    );
    assert!(seen.hairpin_from_router && seen.ttl_beyond, "{seen:?}");
    let v: serde_json::Value = serde_json::from_str(&r.ctl(&["--json", "stats"])).unwrap();
    let per_worker: Vec<u64> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rx_packets"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(per_worker.len(), 2, "{v}");
    // How the devices spread flows over the queues is theirs to choose; say what happened.
    eprintln!(
        "two_workers_route_and_translate: packets per worker {per_worker:?}, handed to their owner {}",
        v["handed_off"]
    );
}

#[test]
fn one_to_one_floating_address_maps_a_private_host_both_ways() {
    if !root_or_skip("one_to_one_floating_address_maps_a_private_host_both_ways") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = 73;
    let t = RouterTopology::for_rampart(net);
    let a = t.addressing;
    let floating = "203.0.113.10";
    let text = format!(
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -p icmp -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -s 10.{net}.0.0/24 -j ACCEPT\n\
         -A FORWARD -d 10.{net}.0.2/32 -p tcp --dport 8000 -j ACCEPT\n\
         -A FORWARD -d 10.{net}.0.2/32 -p icmp -j ACCEPT\nCOMMIT\n"
    );
    let extra = format!(
        "[[nat.one_to_one]]\npublic = \"{floating}\"\nprivate = \"{}\"\n",
        a.inside_host_v4()
    );
    let _r = Rampart::start(&t, &text, &extra, 1);
    assert!(
        t.wait_ping(&a.server_v4(), Duration::from_secs(15)),
        "no echo reply through the gateway"
    );
    // Outbound: the server sees the floating address.
    let srv = Server::start(&t.outside, TCP_SERVER, &a.server_v4(), 8081);
    curl(&t, true, &format!("http://{}:8081/", a.server_v4()));
    assert_eq!(srv.clients()[0].0, floating);
    // Inbound: the floating address reaches the private host, port kept, from the real client.
    let srv = Server::start(&t.inside, TCP_SERVER, &a.inside_host_v4(), 8000);
    let body = curl(&t, false, &format!("http://{floating}:8000/"));
    assert!(body.contains("hello from the server"), "{body}");
    assert_eq!(srv.clients()[0].0, a.server_v4());
    // Ping to the floating address from outside is answered by the private host.
    let o = run(&mut t.outside_cmd(&["ping", "-c", "1", "-W", "2", floating]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

/// docker's rule set (as `iptables-save` prints what dockerd installs for one bridge, `BR`,
/// and one published port) on the inside network: the nat DOCKER chain reached from
/// PREROUTING and OUTPUT (`-i BR -j RETURN`, `! -i BR` DNAT), MASQUERADE `! -o BR`, and the
/// filter's DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2 and DOCKER chains.
fn docker_rules(br: &str, net: u8) -> String {
    format!(
        "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 10.{net}.0.0/24 ! -o {br} -j MASQUERADE
-A POSTROUTING -s 10.{net}.0.2/32 -d 10.{net}.0.2/32 -p tcp -m tcp --dport 8000 -j MASQUERADE
-A DOCKER -i {br} -j RETURN
-A DOCKER ! -i {br} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.{net}.0.2:8000
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o {br} -j DOCKER
-A FORWARD -i {br} ! -o {br} -j ACCEPT
-A FORWARD -i {br} -o {br} -j ACCEPT
-A DOCKER -d 10.{net}.0.2/32 ! -i {br} -o {br} -p tcp -m tcp --dport 8000 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"
    )
}

/// The published port from outside (DNAT, the client's address kept) and a container's
/// connection out (MASQUERADE): the sources the two servers see.
fn docker_scenarios(t: &RouterTopology) -> (String, String) {
    let a = t.addressing;
    assert!(
        t.wait_ping(&a.server_v4(), Duration::from_secs(15)),
        "no echo reply through the gateway"
    );
    let srv = Server::start(&t.inside, TCP_SERVER, &a.inside_host_v4(), 8000);
    let body = curl(t, false, "http://203.0.113.1:8080/");
    assert!(body.contains("hello from the server"), "{body}");
    let published = srv.clients().first().expect("a request").0.clone();
    let srv = Server::start(&t.outside, TCP_SERVER, &a.server_v4(), 8081);
    let body = curl(t, true, &format!("http://{}:8081/", a.server_v4()));
    assert!(body.contains("hello from the server"), "{body}");
    let out = srv.clients().first().expect("a request").0.clone();
    (published, out)
}

/// `scenarios` through Rampart on topology `net` and through a Linux router on `net + 1`, each
/// under `rules(linux, net)`: what each saw.
fn rampart_and_linux<T>(
    net: u8,
    rules: impl Fn(bool, u8) -> String,
    scenarios: impl Fn(&RouterTopology) -> T,
) -> (T, T) {
    let rampart = {
        let t = RouterTopology::for_rampart(net);
        let _r = Rampart::start(&t, &rules(false, net), "", 1);
        scenarios(&t)
    };
    let t = RouterTopology::with_linux_router(net + 1, Some(&rules(true, net + 1)), None);
    (rampart, scenarios(&t))
}

#[test]
fn docker_rule_set_agrees_with_linux() {
    if !root_or_skip("docker_rule_set_agrees_with_linux") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (rampart, linux) = rampart_and_linux(
        75,
        |linux, net| docker_rules(if linux { "ri" } else { "inside" }, net),
        docker_scenarios,
    );
    assert_eq!(
        rampart,
        ("203.0.113.2".to_string(), "203.0.113.1".to_string()),
        "DNAT keeps the client's address; MASQUERADE out"
    );
    assert_eq!(
        rampart, linux,
        "Rampart and Linux translate docker's rules alike"
    );
}

/// kube-proxy's iptables mode for one NodePort service (30080) with two endpoints on the inside
/// host (ports 8000 and 8001) chosen in turn by `-m statistic --mode nth` (deterministic, where
/// kube-proxy's `--mode random` is not), KUBE-MARK-MASQ marking in nat PREROUTING, KUBE-FORWARD
/// accepting the marked first packet in a FORWARD whose policy drops, and KUBE-POSTROUTING
/// masquerading by the mark.
fn kube_rules(net: u8) -> String {
    format!(
        "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-SEP-WEB2 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-EXT-WEB -m comment --comment \"masquerade traffic for default/web:http external destinations\" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/web:http\" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully
-A KUBE-SEP-WEB1 -s 10.{net}.0.2/32 -m comment --comment \"default/web:http\" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB1 -p tcp -m comment --comment \"default/web:http\" -m tcp -j DNAT --to-destination 10.{net}.0.2:8000
-A KUBE-SEP-WEB2 -s 10.{net}.0.2/32 -m comment --comment \"default/web:http\" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB2 -p tcp -m comment --comment \"default/web:http\" -m tcp -j DNAT --to-destination 10.{net}.0.2:8001
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB -m comment --comment \"default/web:http -> 10.{net}.0.2:8000\" -m statistic --mode nth --every 2 --packet 0 -j KUBE-SEP-WEB1
-A KUBE-SVC-WEB -m comment --comment \"default/web:http -> 10.{net}.0.2:8001\" -j KUBE-SEP-WEB2
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD
-A FORWARD -s 10.{net}.0.0/24 -j ACCEPT
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
"
    )
}

/// Three connections from outside to the NodePort: which endpoint port each reached and the
/// source it saw.
/// Waits (up to 10 s) until a TCP server listens on each of `ports` in the inside host's
/// namespace (`inside`) or the outside server's.
fn wait_listening(t: &RouterTopology, inside: bool, ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ss = ["ss", "-ltnH"];
        let o = run(&mut if inside {
            t.inside_cmd(&ss)
        } else {
            t.outside_cmd(&ss)
        });
        let text = String::from_utf8_lossy(&o.stdout);
        if ports.iter().all(|p| text.contains(&format!(":{p} "))) {
            return;
        }
        assert!(Instant::now() < deadline, "servers did not start: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kube_scenarios(t: &RouterTopology) -> Vec<(u16, String)> {
    let a = t.addressing;
    assert!(
        t.wait_ping(&a.server_v4(), Duration::from_secs(15)),
        "no echo reply through the gateway"
    );
    let s1 = Server::start(&t.inside, TCP_SERVER, &a.inside_host_v4(), 8000);
    let s2 = Server::start(&t.inside, TCP_SERVER, &a.inside_host_v4(), 8001);
    // Both listening before the first connection (a refused one would take a turn).
    wait_listening(t, true, &[8000, 8001]);
    for _ in 0..3 {
        // One attempt each: a retry would be a connection of its own and take the next turn.
        let o = run(&mut t.outside_cmd(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://203.0.113.1:30080/",
        ]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut seen: Vec<(u16, String)> = Vec::new();
    for (port, s) in [(8000, s1), (8001, s2)] {
        seen.extend(s.clients().into_iter().map(|c| (port, c.0)));
    }
    seen
}

#[test]
fn kube_proxy_rule_set_agrees_with_linux() {
    if !root_or_skip("kube_proxy_rule_set_agrees_with_linux") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = 81;
    let (rampart, linux) = rampart_and_linux(net, |_, net| kube_rules(net), kube_scenarios);
    // nth: the first and third connection to 8000, the second to 8001; masqueraded by the
    // mark to the gateway's inside address.
    let inside = format!("10.{net}.0.1");
    assert_eq!(
        rampart,
        [
            (8000, inside.clone()),
            (8000, inside.clone()),
            (8001, inside)
        ],
        "{rampart:?}"
    );
    let linux_inside = format!("10.{}.0.1", net + 1);
    assert_eq!(
        linux,
        [
            (8000, linux_inside.clone()),
            (8000, linux_inside.clone()),
            (8001, linux_inside)
        ],
        "Linux chooses and masquerades alike"
    );
}

/// NETMAP both ways: the inside network mapped onto 198.18.0.0/24 on its way out (host bits
/// kept: 10.N.0.2 is seen as 198.18.0.2), and 198.19.0.0/24 mapped onto the inside network
/// on the way in (198.19.0.2 reaches 10.N.0.2, which sees the client's own address).
fn netmap_rules(out: &str, net: u8) -> String {
    format!(
        "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i {out} -d 198.19.0.0/24 -j NETMAP --to 10.{net}.0.0/24
-A POSTROUTING -o {out} -s 10.{net}.0.0/24 -j NETMAP --to 198.18.0.0/24
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p icmp -j ACCEPT
COMMIT
"
    )
}

/// What each server saw: the inside client's address at the outside server, and the outside
/// client's at the inside server reached through the mapped prefix; and whether the outside
/// host's ping to the mapped address was answered.
fn netmap_scenarios(t: &RouterTopology) -> (String, String, bool) {
    let a = t.addressing;
    for prefix in ["198.18.0.0/24", "198.19.0.0/24"] {
        let o =
            run(&mut t.outside_cmd(&["ip", "route", "add", prefix, "via", &a.router_outside_v4()]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(
        t.wait_ping(&a.server_v4(), Duration::from_secs(15)),
        "no echo reply through the gateway"
    );
    let srv = Server::start(&t.outside, TCP_SERVER, &a.server_v4(), 8081);
    let body = curl(t, true, &format!("http://{}:8081/", a.server_v4()));
    assert!(body.contains("hello from the server"), "{body}");
    let out = srv.clients().first().expect("a request").0.clone();
    let srv = Server::start(&t.inside, TCP_SERVER, &a.inside_host_v4(), 8000);
    let body = curl(t, false, "http://198.19.0.2:8000/");
    assert!(body.contains("hello from the server"), "{body}");
    let inward = srv.clients().first().expect("a request").0.clone();
    let ping = run(&mut t.outside_cmd(&["ping", "-c", "1", "-W", "2", "198.19.0.2"]));
    (out, inward, ping.status.success())
}

#[test]
fn netmap_agrees_with_linux() {
    if !root_or_skip("netmap_agrees_with_linux") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (rampart, linux) = rampart_and_linux(
        93,
        |linux, net| netmap_rules(if linux { "ro" } else { "outside" }, net),
        netmap_scenarios,
    );
    assert_eq!(
        rampart,
        ("198.18.0.2".to_string(), "203.0.113.2".to_string(), true),
        "the source mapped out with its host bits, the destination mapped in"
    );
    assert_eq!(rampart, linux, "Rampart and Linux map alike");
}

/// REDIRECT on the inside port: web traffic to any address goes to the router's own port
/// 3128, which INPUT refuses with a reset, and pings to 198.51.100.77 are answered by the
/// router itself. An outside server does listen on port 80: a redirect that did not happen
/// would reach it.
fn redirect_rules(inside: &str) -> String {
    format!(
        "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i {inside} -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128
-A PREROUTING -i {inside} -d 198.51.100.77/32 -p icmp -j REDIRECT
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 3128 -j REJECT --reject-with tcp-reset
-A INPUT -p icmp -j ACCEPT
COMMIT
"
    )
}

/// curl's exit code toward the outside server's port 80 (7: refused by a reset), the same
/// toward port 8081 (not redirected: 0), and the source of the echo reply to 198.51.100.77.
fn redirect_scenarios(t: &RouterTopology) -> (i32, i32, String) {
    let a = t.addressing;
    assert!(
        t.wait_ping(&a.server_v4(), Duration::from_secs(15)),
        "no echo reply through the gateway"
    );
    let _web = Server::start(&t.outside, TCP_SERVER, &a.server_v4(), 80);
    let _other = Server::start(&t.outside, TCP_SERVER, &a.server_v4(), 8081);
    // Both listening before the first connection (a refusal is what port 80 should get).
    wait_listening(t, false, &[80, 8081]);
    let code = |port: u16| {
        let url = format!("http://{}:{port}/", a.server_v4());
        let o = run(&mut t.inside_cmd(&["curl", "-sS", "--max-time", "5", &url]));
        o.status.code().unwrap_or(-1)
    };
    let (web, other) = (code(80), code(8081));
    let o = run(&mut t.inside_cmd(&["ping", "-n", "-c", "1", "-W", "2", "198.51.100.77"]));
    let text = String::from_utf8_lossy(&o.stdout);
    let from = text
        .lines()
        .find_map(|l| {
            let rest = l.split(" bytes from ").nth(1)?;
            Some(rest.split(':').next()?.to_string())
        })
        .unwrap_or_default();
    (web, other, from)
}

#[test]
fn redirect_agrees_with_linux() {
    if !root_or_skip("redirect_agrees_with_linux") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (rampart, linux) = rampart_and_linux(
        95,
        |linux, _| redirect_rules(if linux { "ri" } else { "inside" }),
        redirect_scenarios,
    );
    assert_eq!(
        rampart,
        (7, 0, "198.51.100.77".to_string()),
        "port 80 refused by the router's reset, 8081 served, the ping answered as asked"
    );
    assert_eq!(rampart, linux, "Rampart and Linux redirect alike");
}

/// NETMAP with two workers: connections mapped each way, spread over both queues by the
/// devices, meet their binding's worker both ways (the mapped prefix out is a pool, the
/// prefix in publishes the client's endpoint).
#[test]
fn netmap_through_two_workers() {
    if !root_or_skip("netmap_through_two_workers") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = 97;
    let t = RouterTopology::for_rampart(net);
    let r = Rampart::start(&t, &netmap_rules("outside", net), "", 2);
    assert_eq!(
        netmap_scenarios(&t),
        ("198.18.0.2".to_string(), "203.0.113.2".to_string(), true)
    );
    let a = t.addressing;
    let out = Server::start(&t.outside, TCP_SERVER, &a.server_v4(), 8082);
    let inward = Server::start(&t.inside, TCP_SERVER, &a.inside_host_v4(), 8001);
    for _ in 0..6 {
        curl(&t, true, &format!("http://{}:8082/", a.server_v4()));
        curl(&t, false, "http://198.19.0.2:8001/");
    }
    let out = out.clients();
    let inward = inward.clients();
    assert!(
        out.len() >= 6 && out.iter().all(|c| c.0 == "198.18.0.2"),
        "{out:?}"
    );
    assert!(
        inward.len() >= 6 && inward.iter().all(|c| c.0 == "203.0.113.2"),
        "{inward:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&r.ctl(&["--json", "stats"])).unwrap();
    eprintln!(
        "netmap_through_two_workers: handed to their owner {}",
        v["handed_off"]
    );
}

/// Anti-spoofing in raw PREROUTING (`-m rpfilter --invert -j DROP`, what Calico and
/// firewalld put there), strict or `--loose`.
fn rpfilter_rules(loose: bool) -> String {
    let mode = if loose { " --loose" } else { "" };
    format!(
        "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -m rpfilter{mode} --invert -j DROP
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"
    )
}

/// Sends three datagrams from address `argv[1]` to `argv[2]`:`argv[3]`, without waiting for
/// an answer.
const UDP_SEND_FROM: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
for _ in range(3):
    s.sendto(b"spoof?", (sys.argv[2], int(sys.argv[3])))
    time.sleep(0.1)
"#;

/// From the outside host, a datagram from its own address (its route is the outside port:
/// the right one) and one from an inside address it has taken (whose route is the inside
/// port: the wrong one) to a server on the inside host: the sources the server saw, in order.
fn rpfilter_scenarios(t: &RouterTopology) -> Vec<String> {
    let a = t.addressing;
    assert!(
        t.wait_ping(&a.server_v4(), Duration::from_secs(15)),
        "no echo reply through the gateway"
    );
    let spoofed = format!("10.{}.0.77", a.net);
    run_ok(&mut in_ns(
        &t.outside,
        &["ip", "addr", "add", &format!("{spoofed}/32"), "dev", "vo"],
    ));
    let srv = Server::start(&t.inside, UDP_SERVER, &a.inside_host_v4(), 5354);
    for from in [spoofed.as_str(), "203.0.113.2"] {
        let o = run(&mut t.outside_cmd(&[
            "python3",
            "-c",
            UDP_SEND_FROM,
            from,
            &a.inside_host_v4(),
            "5354",
        ]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut seen: Vec<String> = srv.clients().into_iter().map(|c| c.0).collect();
    seen.dedup();
    seen
}

#[test]
fn rpfilter_agrees_with_linux() {
    if !root_or_skip("rpfilter_agrees_with_linux") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (loose, net) in [(false, 111u8), (true, 113)] {
        let rampart = {
            let t = RouterTopology::for_rampart(net);
            let _r = Rampart::start(&t, &rpfilter_rules(loose), "", 1);
            rpfilter_scenarios(&t)
        };
        let linux = {
            let t = RouterTopology::with_linux_router(net + 1, Some(&rpfilter_rules(loose)), None);
            // The kernel's own reverse-path filter (inherited from the host's settings) off:
            // only the rule decides.
            let r = t.router.clone().expect("a router namespace");
            for dev in ["all", "default", "ri", "ro"] {
                run_ok(&mut in_ns(
                    &r,
                    &["sysctl", "-qw", &format!("net.ipv4.conf.{dev}.rp_filter=0")],
                ));
            }
            rpfilter_scenarios(&t)
                .into_iter()
                .map(|s| s.replace(&format!("10.{}.0.", net + 1), &format!("10.{net}.0.")))
                .collect::<Vec<_>>()
        };
        let want: Vec<String> = if loose {
            vec![format!("10.{net}.0.77"), "203.0.113.2".into()]
        } else {
            vec!["203.0.113.2".into()]
        };
        assert_eq!(rampart, want, "loose {loose}: Rampart");
        assert_eq!(
            rampart, linux,
            "loose {loose}: Rampart and Linux filter alike"
        );
    }
}
