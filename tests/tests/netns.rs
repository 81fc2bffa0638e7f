//! End to end through network namespaces: two hosts joined by Rampart on `net_af_packet` ports
//! over veth pairs. `ping` and a TCP transfer must cross it. The test creates and deletes its own
//! namespaces and links, and sends traffic only between them.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, root_or_skip, run, run_ok, test_eal_args, toml_array, unique};

/// Namespaces and veth pairs, removed on drop (even when the test panics).
struct Topology {
    ns: [String; 2],
    outer: [String; 2],
}

fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args));
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

impl Topology {
    /// ns[0] (10.x.0.1, fd00:x::1) -- veth -- outer[0] | Rampart | outer[1] -- veth -- ns[1] (.2)
    fn create(net: u8) -> Topology {
        let tag = unique("");
        let t = Topology {
            ns: [format!("rpa{tag}"), format!("rpb{tag}")],
            outer: [format!("rpa{tag}o"), format!("rpb{tag}o")],
        };
        for i in 0..2 {
            let (ns, outer) = (&t.ns[i], &t.outer[i]);
            let inner = format!("{outer}i");
            ip(&["netns", "add", ns]);
            ip(&["link", "add", outer, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", ns]);
            run(Command::new("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{outer}.disable_ipv6=1")]));
            // Full-size frames with real checksums: no segmentation or checksum offload, since
            // frames cross user space between the two veth pairs.
            for dev_ns in [None, Some(ns.as_str())] {
                let dev = if dev_ns.is_some() {
                    inner.as_str()
                } else {
                    outer.as_str()
                };
                let mut c = match dev_ns {
                    Some(n) => in_ns(n, &["ethtool", "-K", dev]),
                    None => {
                        let mut c = Command::new("ethtool");
                        c.args(["-K", dev]);
                        c
                    }
                };
                run(c.args([
                    "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
                ]));
            }
            ip(&["link", "set", outer, "up"]);
            let addr = format!("10.{net}.0.{}/24", i + 1);
            let addr6 = format!("fd00:{net}::{}/64", i + 1);
            run_ok(&mut in_ns(ns, &["ip", "addr", "add", &addr, "dev", &inner]));
            run_ok(&mut in_ns(
                ns,
                &["ip", "addr", "add", &addr6, "dev", &inner, "nodad"],
            ));
            run_ok(&mut in_ns(ns, &["ip", "link", "set", &inner, "up"]));
            run_ok(&mut in_ns(ns, &["ip", "link", "set", "lo", "up"]));
        }
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for i in 0..2 {
            let _ = Command::new("ip")
                .args(["link", "del", &self.outer[i]])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns[i]])
                .output();
        }
    }
}

/// A running `rampart run`, stopped with SIGTERM on drop.
struct Daemon {
    child: Option<Child>,
    summary: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// The management socket.
    fn socket(&self) -> std::path::PathBuf {
        self._dir.path().join("m.sock")
    }

    fn start(t: &Topology) -> Daemon {
        Daemon::start_with_rules(t, None)
    }

    fn start_with_rules(t: &Topology, rules: Option<&str>) -> Daemon {
        Daemon::start_with_sets(t, rules, None)
    }

    /// With an `ipset save` file for the rules' `-m set` too.
    fn start_with_sets(t: &Topology, rules: Option<&str>, sets: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut rules_conf = match rules {
            Some(text) => {
                let p = dir.path().join("rules.v4");
                std::fs::write(&p, text).unwrap();
                format!("[rules]\nipv4 = \"{}\"\n", p.display())
            }
            None => String::new(),
        };
        if let Some(text) = sets {
            let p = dir.path().join("ipsets");
            std::fs::write(&p, text).unwrap();
            rules_conf += &format!("ipsets = \"{}\"\n", p.display());
        }
        let prefix = unique("rpns");
        let cfg = format!(
            r#"
[eal]
args = {eal}
[[port]]
name = "a"
device = "net_af_packet{p}a,iface={oa},qpairs=1"
[[port]]
name = "b"
device = "net_af_packet{p}b,iface={ob},qpairs=1"
[bridge]
pairs = [["a", "b"]]
{rules_conf}
[management]
socket = "{sock}"
[mempool]
mbufs = 4095
cache = 64
[rings]
rx_desc = 512
tx_desc = 512
"#,
            eal = toml_array(&test_eal_args(&prefix, "0@0,1@1")),
            p = prefix,
            oa = t.outer[0],
            ob = t.outer[1],
            sock = dir.path().join("m.sock").display(),
        );
        let cfg_path = dir.path().join("ns.toml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let summary = dir.path().join("summary.json");
        let child = Command::new(bin("rampart"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .arg("--summary-json")
            .arg(&summary)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rampart");
        Daemon {
            child: Some(child),
            summary,
            _dir: dir,
        }
    }

    /// Sends SIGTERM and returns the final summary; the daemon must exit 0.
    fn stop(mut self) -> serde_json::Value {
        let mut child = self.child.take().unwrap();
        run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "rampart did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (mut out, mut err) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            status.success(),
            "rampart exited {status}\nstdout:\n{out}\nstderr:\n{err}"
        );
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.summary).unwrap()).unwrap();
        eprintln!("{out}");
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The namespace tests run one at a time: each daemon busy-polls a core, and two of them plus
/// the clients on a 2-core machine starve each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits until `ping` gets through (the daemon needs a moment to start its ports); fails with
/// the daemon's output if it exited.
fn wait_for_path(d: &mut Daemon, ns: &str, dst: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            let mut err = String::new();
            let _ = d
                .child
                .as_mut()
                .unwrap()
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err);
            panic!("rampart exited {status} before the path came up:\n{err}");
        }
        if run(&mut in_ns(ns, &["ping", "-c", "1", "-W", "1", dst]))
            .status
            .success()
        {
            return;
        }
    }
    panic!("no path from {ns} to {dst} through rampart within 30 s");
}

#[test]
fn ping_and_tcp_cross_rampart_between_namespaces() {
    if !root_or_skip("ping_and_tcp_cross_rampart_between_namespaces") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topology::create(77);
    let mut d = Daemon::start(&t);
    wait_for_path(&mut d, &t.ns[0], "10.77.0.2");

    // ICMP both families.
    run_ok(&mut in_ns(
        &t.ns[0],
        &["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.77.0.2"],
    ));
    run_ok(&mut in_ns(
        &t.ns[1],
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "-6",
            "fd00:77::1",
        ],
    ));

    // TCP: 4 MiB served over HTTP from b, fetched by a; the bytes must arrive intact.
    let dir = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.path().join("blob"), &payload).unwrap();
    let mut server = in_ns(
        &t.ns[1],
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            "10.77.0.2",
            "8080",
        ],
    )
    .current_dir(dir.path())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let fetched = dir.path().join("fetched");
    let mut ok = false;
    for _ in 0..50 {
        let out = run(&mut in_ns(
            &t.ns[0],
            &[
                "curl",
                "-sS",
                "--max-time",
                "30",
                "-o",
                fetched.to_str().unwrap(),
                "http://10.77.0.2:8080/blob",
            ],
        ));
        if out.status.success() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(ok, "curl through rampart failed");
    assert!(
        std::fs::read(&fetched).unwrap() == payload,
        "TCP transfer through rampart corrupted data"
    );

    // TCP with nc the other way: b sends to a.
    let mut listener = in_ns(&t.ns[0], &["nc", "-l", "-N", "10.77.0.1", "9090"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let msg = "through the rampart\n".repeat(1000);
    let mut sender = in_ns(&t.ns[1], &["nc", "-N", "-w", "5", "10.77.0.1", "9090"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        sender
            .stdin
            .take()
            .unwrap()
            .write_all(msg.as_bytes())
            .unwrap();
    }
    assert!(sender.wait().unwrap().success());
    let mut got = String::new();
    listener
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    let _ = listener.wait();
    assert_eq!(got, msg);

    let s = d.stop();
    let fwd = s["tx_packets"].as_u64().unwrap();
    assert!(fwd > 3000, "rampart forwarded only {fwd} packets: {s}");
    assert_eq!(
        s["mbufs_in_use"]["start"], s["mbufs_in_use"]["end"],
        "mbuf leak: {s}"
    );
    assert_eq!(s["tx_refused"], 0, "{s}");
}

#[test]
fn reject_answers_with_tcp_reset_and_icmp_port_unreachable() {
    if !root_or_skip("reject_answers_with_tcp_reset_and_icmp_port_unreachable") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topology::create(78);
    let rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A FORWARD -p tcp --dport 9999 -j REJECT --reject-with tcp-reset\n\
-A FORWARD -p udp --dport 9998 -j REJECT\n\
COMMIT\n";
    let mut d = Daemon::start_with_rules(&t, Some(rules));
    wait_for_path(&mut d, &t.ns[0], "10.78.0.2");
    // A listener on b: without the REJECT the connection would succeed.
    let mut listener = in_ns(&t.ns[1], &["nc", "-l", "-k", "10.78.0.2", "9999"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let probe = r#"
import socket, sys, time
t = time.time()
s = socket.socket(); s.settimeout(5)
try:
    s.connect(("10.78.0.2", 9999)); print("connected")
except ConnectionRefusedError:
    print("refused %.3f" % (time.time() - t))
except socket.timeout:
    print("timeout")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
u.connect(("10.78.0.2", 9998))
try:
    u.send(b"x"); u.recv(10); print("udp answered")
except ConnectionRefusedError:
    print("udp refused")
except socket.timeout:
    print("udp timeout")
"#;
    let out = run_ok(&mut in_ns(&t.ns[0], &["python3", "-c", probe]));
    let _ = listener.kill();
    let _ = listener.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("refused"),
        "TCP to 9999 is refused by a reset: {text}"
    );
    assert!(
        text.contains("udp refused"),
        "UDP to 9998 gets port unreachable: {text}"
    );
    let s = d.stop();
    assert!(s["reject_replies"]["sent"].as_u64().unwrap() >= 2, "{s}");
    assert!(s["drops"]["rule_reject"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["mbufs_in_use"]["start"], s["mbufs_in_use"]["end"], "{s}");
}

#[test]
fn stateful_rules_let_replies_in_and_keep_unsolicited_traffic_out() {
    if !root_or_skip("stateful_rules_let_replies_in_and_keep_unsolicited_traffic_out") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topology::create(79);
    // Port a is the inside: it may open TCP 8080 and ping; port b only answers.
    let rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
-A FORWARD -m conntrack --ctstate INVALID -j DROP\n\
-A FORWARD -i a -p tcp --dport 8080 -m conntrack --ctstate NEW -j ACCEPT\n\
-A FORWARD -i a -p icmp --icmp-type echo-request -m conntrack --ctstate NEW -j ACCEPT\n\
COMMIT\n";
    let mut d = Daemon::start_with_rules(&t, Some(rules));
    wait_for_path(&mut d, &t.ns[0], "10.79.0.2");
    // A server on b that sends 1 MiB to whoever connects; another on a, which b tries to reach.
    let server = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4)
while True:
    c, _ = s.accept(); c.sendall(b"x" * (1 << 20)); c.close()
"#;
    let mut servers = [
        in_ns(&t.ns[1], &["python3", "-c", server, "10.79.0.2", "8080"])
            .spawn()
            .unwrap(),
        in_ns(&t.ns[0], &["python3", "-c", server, "10.79.0.1", "8081"])
            .spawn()
            .unwrap(),
    ];
    std::thread::sleep(Duration::from_millis(400));
    let client = r#"
import socket, sys
s = socket.socket(); s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    n = 0
    while True:
        b = s.recv(65536)
        if not b: break
        n += len(b)
    print("received", n)
except (socket.timeout, OSError) as e:
    print("failed", e)
"#;
    let out = run_ok(&mut in_ns(
        &t.ns[0],
        &["python3", "-c", client, "10.79.0.2", "8080"],
    ));
    let inside_out = String::from_utf8_lossy(&out.stdout).to_string();
    // The connection's entry, seen through the management socket before it times out.
    let list = run_ok(
        Command::new(bin("rampart"))
            .args(["ctl", "--json", "--socket"])
            .arg(d.socket())
            .args(["conntrack", "list"]),
    );
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let out = run_ok(&mut in_ns(
        &t.ns[1],
        &["python3", "-c", client, "10.79.0.1", "8081"],
    ));
    let outside_in = String::from_utf8_lossy(&out.stdout).to_string();
    let ping_in = run(&mut in_ns(
        &t.ns[1],
        &["ping", "-c", "1", "-W", "1", "10.79.0.1"],
    ));
    let flush = run_ok(
        Command::new(bin("rampart"))
            .args(["ctl", "--json", "--socket"])
            .arg(d.socket())
            .args(["conntrack", "flush"]),
    );
    let flush: serde_json::Value = serde_json::from_slice(&flush.stdout).unwrap();
    let after = run_ok(
        Command::new(bin("rampart"))
            .args(["ctl", "--json", "--socket"])
            .arg(d.socket())
            .args(["conntrack", "list"]),
    );
    let after: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    for s in servers.iter_mut() {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert_eq!(
        inside_out.trim(),
        "received 1048576",
        "a -> b:8080 is allowed"
    );
    assert!(
        outside_in.starts_with("failed"),
        "b -> a:8081 must not get through: {outside_in}"
    );
    assert!(!ping_in.status.success(), "b cannot ping a");
    let conns = list["connections"].as_array().expect("a list");
    let http = conns
        .iter()
        .find(|c| c["proto"] == "tcp" && c["orig"]["dport"] == 8080)
        .unwrap_or_else(|| panic!("the TCP connection is tracked: {list}"));
    assert_eq!(http["orig"]["src"], "10.79.0.1", "{http}");
    assert_eq!(http["reply"]["src"], "10.79.0.2", "{http}");
    assert_eq!(http["assured"], true, "{http}");
    assert!(
        http["bytes"][1].as_u64().unwrap() > 1 << 20,
        "the reply direction carried the megabyte: {http}"
    );
    assert!(
        !conns.iter().any(|c| c["orig"]["dport"] == 8081),
        "the refused connection left no entry: {list}"
    );
    assert!(flush["removed"].as_u64().unwrap() >= 1, "{flush}");
    assert_eq!(after["count"], 0, "{after}");
    let s = d.stop();
    assert!(s["conntrack"]["created"].as_u64().unwrap() >= 2, "{s}");
    assert!(s["drops"]["rule_drop"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["mbufs_in_use"]["start"], s["mbufs_in_use"]["end"], "{s}");
}

/// fail2ban's ban at run time: a flow passes, `rampart ctl ipset add` bans its source and the
/// next packets are dropped, `ipset del` lets them through again, and an entry added with a
/// timeout lifts itself by the workers' clock; no rule set is loaded in between, and every
/// mbuf is back at the end.
#[test]
fn ipset_add_and_del_ban_and_unban_without_a_reload() {
    if !root_or_skip("ipset_add_and_del_ban_and_unban_without_a_reload") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topology::create(83);
    let rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A FORWARD -m set --match-set f2b src -j DROP\nCOMMIT\n";
    let sets = "create f2b hash:ip family inet hashsize 1024 maxelem 65536 timeout 0\n";
    let mut d = Daemon::start_with_sets(&t, Some(rules), Some(sets));
    wait_for_path(&mut d, &t.ns[0], "10.83.0.2");
    let ctl = |args: &[&str]| {
        run(Command::new(bin("rampart"))
            .args(["ctl", "--socket"])
            .arg(d.socket())
            .arg("ipset")
            .args(args))
    };
    let ping = || {
        run(&mut in_ns(
            &t.ns[0],
            &["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.83.0.2"],
        ))
        .status
        .success()
    };
    assert!(ctl(&["add", "f2b", "10.83.0.1"]).status.success());
    assert!(!ping(), "banned: the echo requests are dropped");
    assert!(ctl(&["test", "f2b", "10.83.0.1"]).status.success());
    let listed = ctl(&["list", "f2b"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "create f2b hash:ip family inet hashsize 1024 maxelem 65536 timeout 0\n\
         add f2b 10.83.0.1 timeout 0\n"
    );
    let again = ctl(&["add", "f2b", "10.83.0.1"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("it's already added"),
        "{again:?}"
    );
    assert!(ctl(&["add", "f2b", "10.83.0.1", "-exist"]).status.success());
    assert!(ctl(&["del", "f2b", "10.83.0.1"]).status.success());
    assert!(ping(), "unbanned with no reload");
    assert!(!ctl(&["test", "f2b", "10.83.0.1"]).status.success());
    // A ban for 2 seconds lifts itself.
    assert!(ctl(&["add", "f2b", "10.83.0.1", "timeout", "2"])
        .status
        .success());
    assert!(!ping(), "banned for 2 s");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(ping(), "the ban timed out on the workers' clock");
    // One rule set all along: its counter (zeroed by any load) holds every banned packet.
    let shown = run_ok(
        Command::new(bin("rampart"))
            .args(["ctl", "--json", "--socket"])
            .arg(d.socket())
            .args(["rules", "show"]),
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(
        shown["rules"][0]["packets"].as_u64().unwrap_or(0) >= 4,
        "the banned echo requests were dropped by the set rule: {shown}"
    );
    let summary = d.stop();
    assert_eq!(
        summary["mbufs_in_use_end"], summary["mbufs_in_use_start"],
        "every mbuf back: {summary}"
    );
}
