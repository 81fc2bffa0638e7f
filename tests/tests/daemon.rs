//! The daemon's control plane under load: rule swaps through the management socket while traffic
//! flows (no packet lost; after a swap is acknowledged only the new rules judge packets; memory
//! flat), broken rule files through `rules load` and SIGHUP, socket abuse, and the metrics
//! endpoint parsed as Prometheus text.

use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, root_or_skip, run_ok, test_eal_args, toml_array, unique};

const ACCEPT_ALL: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p udp --dport 1000 -j ACCEPT\nCOMMIT\n";
const DROP_ALL: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p udp --dport 2000 -j ACCEPT\nCOMMIT\n";
const BROKEN: &str =
    "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp --dport 1000 -m recent -j ACCEPT\nCOMMIT\n";

struct Daemon {
    child: Child,
    socket: PathBuf,
    metrics: Option<String>,
    dir: tempfile::TempDir,
}

fn request(socket: &Path, req: &Value) -> Value {
    let mut s = UnixStream::connect(socket).expect("connect to the management socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    writeln!(s, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?} is not JSON: {e}"))
}

impl Daemon {
    /// A bridge between two net_pcap ports replaying UDP frames to port 1000 endlessly.
    fn start(metrics: bool) -> Daemon {
        Daemon::start_with(metrics, "tree")
    }

    fn start_with(metrics: bool, classifier: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let frames: Vec<Vec<u8>> = (0..64u16)
            .map(|i| {
                FrameSpec::new(
                    IpSpec::v4([10, 0, 0, 1].into(), [10, 0, 1, 1].into()),
                    L4Spec::udp(3000 + i, 1000, &[0; 18]),
                )
                .build()
            })
            .collect();
        control::pcap::write_frames(&p("in.pcap"), frames.iter().map(|f| f.as_slice())).unwrap();
        control::pcap::write_frames(&p("empty.pcap"), std::iter::empty()).unwrap();
        std::fs::write(p("rules"), ACCEPT_ALL).unwrap();
        let prefix = unique("rpd");
        let socket = p("m.sock");
        let cfg = format!(
            r#"
[eal]
args = {eal}
[[port]]
name = "a"
device = "net_pcap{prefix}a,rx_pcap={inp},tx_pcap=/dev/null,infinite_rx=1"
[[port]]
name = "b"
device = "net_pcap{prefix}b,rx_pcap={empty},tx_pcap=/dev/null"
[bridge]
pairs = [["a", "b"]]
[rules]
ipv4 = "{rules}"
classifier = "{classifier}"
[management]
socket = "{socket}"
{metrics}
[mempool]
mbufs = 4095
cache = 64
[rings]
rx_desc = 512
tx_desc = 512
"#,
            eal = toml_array(&test_eal_args(&prefix, "0@0,1@1")),
            inp = p("in.pcap").display(),
            empty = p("empty.pcap").display(),
            rules = p("rules").display(),
            socket = socket.display(),
            metrics = if metrics {
                "[metrics]\nlisten = \"127.0.0.1:0\""
            } else {
                ""
            },
        );
        std::fs::write(p("cfg.toml"), cfg).unwrap();
        let child = Command::new(bin("rampart"))
            .args(["run", "--config"])
            .arg(p("cfg.toml"))
            .arg("--summary-json")
            .arg(p("summary.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            socket,
            metrics: None,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&d.socket).is_err() {
            if let Some(s) = d.child.try_wait().unwrap() {
                let mut err = String::new();
                d.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("rampart exited {s} at start:\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "management socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if metrics {
            let v = d.stats();
            d.metrics = v["metrics"].as_str().map(str::to_string);
            assert!(d.metrics.is_some(), "stats names the metrics address: {v}");
        }
        d
    }

    fn req(&self, v: Value) -> Value {
        request(&self.socket, &v)
    }

    fn stats(&self) -> Value {
        let v = self.req(json!({"cmd": "stats"}));
        assert_eq!(v["ok"], true, "{v}");
        v
    }

    fn load(&self, text: &str) -> Value {
        let f = self.dir.path().join("swap.rules");
        std::fs::write(&f, text).unwrap();
        self.req(json!({"cmd": "rules load", "file": f.display().to_string()}))
    }

    fn rss_kb(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }

    fn stop(mut self) -> Value {
        run_ok(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "rampart did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "rampart failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("summary.json")).unwrap(),
        )
        .unwrap()
    }
}

fn tx(v: &Value) -> u64 {
    v["tx_packets"].as_u64().unwrap()
}

#[test]
fn thousand_rule_swaps_under_load_lose_nothing() {
    if !root_or_skip("thousand_rule_swaps_under_load_lose_nothing") {
        return;
    }
    let d = Daemon::start(false);
    std::thread::sleep(Duration::from_millis(300));
    assert!(tx(&d.stats()) > 0, "traffic flows with the accepting rules");
    let rss_before = d.rss_kb();
    let mut swap_us = Vec::new();
    for i in 0..1000 {
        let drop_phase = i % 2 == 0;
        let a = d.load(if drop_phase { DROP_ALL } else { ACCEPT_ALL });
        assert_eq!(a["ok"], true, "swap {i}: {a}");
        swap_us.push(a["swap_us"].as_u64().unwrap());
        if drop_phase && i % 20 == 0 {
            // Acknowledged: every worker runs the dropping rules, so nothing more is forwarded
            // (beyond what already sat in a TX buffer, flushed within the drain interval).
            std::thread::sleep(Duration::from_millis(5));
            let t1 = tx(&d.stats());
            std::thread::sleep(Duration::from_millis(30));
            let t2 = tx(&d.stats());
            assert_eq!(
                t1, t2,
                "swap {i}: packets forwarded after the dropping rules were acknowledged"
            );
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let rss_after = d.rss_kb();
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grows with swaps: {rss_before} kB -> {rss_after} kB"
    );
    swap_us.sort_unstable();
    eprintln!(
        "swap latency: median {} us, p99 {} us",
        swap_us[swap_us.len() / 2],
        swap_us[swap_us.len() * 99 / 100]
    );
    let s = d.stop();
    // Zero loss: everything received was forwarded or dropped by a rule, nothing else.
    let rx = s["rx_packets"].as_u64().unwrap();
    let dropped = s["drops"]["rule_drop"].as_u64().unwrap_or(0);
    assert_eq!(
        s["drops"].as_object().unwrap().len(),
        usize::from(dropped > 0),
        "only rule drops: {s}"
    );
    assert_eq!(rx, tx(&s) + dropped, "{s}");
    assert_eq!(s["tx_refused"], 0);
    assert_eq!(s["mbufs_in_use"]["start"], s["mbufs_in_use"]["end"], "{s}");
}

#[test]
fn broken_rules_change_nothing_through_socket_and_sighup() {
    if !root_or_skip("broken_rules_change_nothing_through_socket_and_sighup") {
        return;
    }
    let d = Daemon::start(false);
    let a = d.load(BROKEN);
    assert_eq!(a["ok"], false);
    let e = a["error"].as_str().unwrap();
    assert!(e.contains("swap.rules:3:"), "the error names the line: {e}");
    // Still forwarding with the previous rules.
    let t1 = tx(&d.stats());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        tx(&d.stats()) > t1,
        "traffic still judged by the previous (accepting) rules"
    );

    // SIGHUP rereads the configured file: broken first (nothing changes), then dropping.
    std::fs::write(d.dir.path().join("rules"), BROKEN).unwrap();
    run_ok(Command::new("kill").args(["-HUP", &d.child.id().to_string()]));
    std::thread::sleep(Duration::from_millis(300));
    let t1 = tx(&d.stats());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        tx(&d.stats()) > t1,
        "a broken file on SIGHUP changes nothing"
    );
    std::fs::write(d.dir.path().join("rules"), DROP_ALL).unwrap();
    run_ok(Command::new("kill").args(["-HUP", &d.child.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t1 = tx(&d.stats());
        std::thread::sleep(Duration::from_millis(50));
        if tx(&d.stats()) == t1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP with good rules never took effect"
        );
    }
    let show = d.req(json!({"cmd": "rules show"}));
    assert!(
        show["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule"] == "policy FORWARD DROP"),
        "{show}"
    );
    let s = d.stop();
    assert!(s["drops"]["rule_drop"].as_u64().unwrap() > 0);
    let stderr_note = "the daemon logged the failed reload";
    let _ = stderr_note;
}

#[test]
fn socket_abuse_is_answered_and_forwarding_goes_on() {
    if !root_or_skip("socket_abuse_is_answered_and_forwarding_goes_on") {
        return;
    }
    let d = Daemon::start(true);
    for bad in [
        "not json",
        "{}",
        "[1]",
        "{\"cmd\":\"reboot\"}",
        "{\"cmd\":\"stats\",\"extra\":1}",
    ] {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        writeln!(s, "{bad}").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], false, "{bad} -> {v}");
    }
    {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        let _ = s.write_all(&vec![b'{'; 200_000]);
    }
    {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(b"{\"cmd\":").unwrap(); // and hang up mid-request
    }
    let clients: Vec<_> = (0..24)
        .map(|_| {
            let sock = d.socket.clone();
            std::thread::spawn(move || request(&sock, &json!({"cmd": "stats"})))
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap()["ok"], true);
    }
    let mode = std::fs::metadata(&d.socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    let t1 = tx(&d.stats());
    std::thread::sleep(Duration::from_millis(100));
    assert!(tx(&d.stats()) > t1, "forwarding goes on");

    // Metrics: scraped over HTTP and parsed as Prometheus text.
    let addr = d.metrics.clone().unwrap();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    write!(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let rx: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "rampart_port_rx_packets_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(rx > 0.0, "rx counter exported");
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "rampart_rule_swaps_total"));
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "rampart_rule_packets_total"));
    d.stop();
}

#[test]
fn rte_acl_classifier_judges_and_swaps() {
    if !root_or_skip("rte_acl_classifier_judges_and_swaps") {
        return;
    }
    let d = Daemon::start_with(false, "rte_acl");
    std::thread::sleep(Duration::from_millis(200));
    let t1 = tx(&d.stats());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        tx(&d.stats()) > t1,
        "accepting rules forward through rte_acl"
    );
    for i in 0..20 {
        let a = d.load(if i % 2 == 0 { DROP_ALL } else { ACCEPT_ALL });
        assert_eq!(a["ok"], true, "{a}");
    }
    let a = d.load(DROP_ALL);
    assert_eq!(a["ok"], true);
    std::thread::sleep(Duration::from_millis(5));
    let t1 = tx(&d.stats());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        tx(&d.stats()),
        t1,
        "dropping rules acknowledged: nothing more forwarded"
    );
    let s = d.stop();
    assert_eq!(s["mbufs_in_use"]["start"], s["mbufs_in_use"]["end"]);
}

#[test]
fn nat_rules_load_through_the_socket_and_nat_list_shows_the_bindings() {
    let d = Daemon::start(false);
    let v = d.req(json!({"cmd": "nat list"}));
    assert_eq!(
        (v["ok"].clone(), v["count"].clone()),
        (json!(true), json!(0)),
        "{v}"
    );
    let v = d.load(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A POSTROUTING -s 10.0.0.0/24 -o b -p udp -j SNAT --to-source 203.0.113.1\nCOMMIT\n\
         *filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n",
    );
    assert_eq!(v["ok"], true, "{v}");
    // Connections already tracked keep their (empty) binding, as in Linux: flush so that
    // every flow starts again under the nat table.
    assert_eq!(d.req(json!({"cmd": "conntrack flush"}))["ok"], true);
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let v = d.req(json!({"cmd": "nat list"}));
        assert_eq!(v["ok"], true, "{v}");
        if v["count"] == 64 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["count"], 64, "one binding per flow: {v}");
    for b in v["bindings"].as_array().unwrap() {
        assert_eq!(b["orig"]["src"], "10.0.0.1", "{b}");
        assert_eq!(b["translated"]["src"], "203.0.113.1", "{b}");
        assert_eq!(
            b["translated"]["sport"], b["orig"]["sport"],
            "port kept: {b}"
        );
        assert_eq!(
            (b["snat"].clone(), b["dnat"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(b["reply"]["dst"], "203.0.113.1", "{b}");
    }
    let st = d.stats();
    assert_eq!(st["conntrack"]["nat_bindings"], 64, "{st}");
    let v = d.req(json!({"cmd": "nat list", "max": 5}));
    assert_eq!(
        (v["count"].clone(), v["truncated"].clone()),
        (json!(5), json!(true))
    );
    d.stop();
}

/// `-m time` follows a step of the wall clock within a second, as Linux reads the clock per
/// packet: the `clock shift` request (tests only) moves the clock the daemon reads, as a step
/// of the host's clock would, without touching the host's.
#[test]
fn time_rules_follow_a_step_of_the_wall_clock() {
    let d = Daemon::start(false);
    let v = d.load(
        "*filter\n:FORWARD DROP [0:0]\n\
         -A FORWARD -p udp -m time --datestart 2020-01-01 --datestop 2037-01-01 -j ACCEPT\n\
         COMMIT\n",
    );
    assert_eq!(v["ok"], true, "{v}");
    let moving = |d: &Daemon| {
        let t = tx(&d.stats());
        std::thread::sleep(Duration::from_millis(100));
        tx(&d.stats()) > t
    };
    // The open window now; the flows' first packets (conntrack keeps no verdict for a rule
    // set with a time match) are judged at every packet.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !moving(&d) {
        assert!(Instant::now() < deadline, "nothing forwarded in the window");
    }
    // Twenty years on: past --datestop, within a second.
    let year = 365 * 86_400 * 1_000_000_000i64;
    let v = d.req(json!({"cmd": "clock shift", "ns": 20 * year}));
    assert_eq!(v["ok"], true, "{v}");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!moving(&d), "the window closed with the clock's step");
    // Ten years back: before --datestart.
    assert_eq!(
        d.req(json!({"cmd": "clock shift", "ns": -10 * year}))["ok"],
        true
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!moving(&d), "closed before --datestart");
    assert_eq!(d.req(json!({"cmd": "clock shift", "ns": 0}))["ok"], true);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(moving(&d), "open again on the host's clock");
    let bad = d.req(json!({"cmd": "clock shift", "ns": "soon"}));
    assert_eq!(bad["ok"], false, "{bad}");
    let s = d.stop();
    assert_eq!(s["mbufs_in_use"]["start"], s["mbufs_in_use"]["end"]);
}

/// NFLOG rules in the daemon: the verdicts are the rules' after them, and each record goes
/// where LOG's go (the daemon's log), naming the group and the prefix; the rule's counters
/// count it.
#[test]
fn nflog_records_name_their_group() {
    if !root_or_skip("nflog_records_name_their_group") {
        return;
    }
    let d = Daemon::start(false);
    let a = d.load(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -p udp -m udp --dport 1000 -j NFLOG --nflog-group 5 --nflog-prefix \"seen \" --nflog-size 64\n\
         -A FORWARD -p udp -m udp --dport 1000 -j ACCEPT\n\
         COMMIT\n",
    );
    assert_eq!(a["ok"], true, "{a}");
    let t1 = tx(&d.stats());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        tx(&d.stats()) > t1,
        "NFLOG leaves the verdict to the ACCEPT after it"
    );
    let show = d.req(json!({"cmd": "rules show"}));
    let nflog = show["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["line"] == 5)
        .unwrap_or_else(|| panic!("rules show lists the NFLOG rule: {show}"))
        .clone();
    assert!(nflog["packets"].as_u64().unwrap_or(0) > 0, "{nflog}");
    run_ok(Command::new("kill").args(["-TERM", &d.child.id().to_string()]));
    let mut d = d;
    let out = std::mem::replace(&mut d.child, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("seen GROUP=5 IN=a OUT=b SRC=10.0.0.1 DST=10.0.1.1 PROTO=17"))
        .unwrap_or_else(|| panic!("no NFLOG record in the daemon's log:\n{err}"));
    assert!(line.contains("DPT=1000"), "{line}");
}

/// `-m nfacct` in the daemon: behind `-m quota` exactly ten of the endless 46-byte datagrams
/// reach the match, so the object counts 10 packets and 460 bytes; a reload of the same rules
/// (the quota anew) adds ten more to the same object; `list --reset` gives the counts and
/// zeroes them; an object the rules in force name is not deleted, and is once they do not.
#[test]
fn nfacct_objects_count_and_outlive_rule_swaps() {
    if !root_or_skip("nfacct_objects_count_and_outlive_rule_swaps") {
        return;
    }
    let d = Daemon::start(false);
    let nfacct = |op: &str, name: Option<&str>, reset: bool| {
        d.req(json!({"cmd": "nfacct", "op": op, "name": name, "reset": reset}))
    };
    let a = nfacct("add", Some("spare"), false);
    assert_eq!(a["ok"], true, "{a}");
    let a = nfacct("add", Some("spare"), false);
    assert_eq!(a["ok"], false, "added twice: {a}");
    let rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 -A FORWARD -m quota --quota 460 -m nfacct --nfacct-name ten -j ACCEPT\n\
                 -A FORWARD -j ACCEPT\nCOMMIT\n";
    let get = |reset: bool| {
        let v = nfacct("get", Some("ten"), reset);
        assert_eq!(v["ok"], true, "{v}");
        (
            v["objects"][0]["pkts"].as_u64().unwrap(),
            v["objects"][0]["bytes"].as_u64().unwrap(),
        )
    };
    let settle = |want: (u64, u64)| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(false) != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(get(false), want);
    };
    let a = d.load(rules);
    assert_eq!(a["ok"], true, "{a}");
    settle((10, 460));
    let a = d.load(rules);
    assert_eq!(a["ok"], true, "{a}");
    settle((20, 920));
    // A rule set refused leaves the objects as they were and makes none.
    let a = d.load(
        &rules
            .replace("ten", "other")
            .replace("-A FORWARD -j ACCEPT", "-A FORWARD -j no-such-chain"),
    );
    assert_eq!(a["ok"], false, "{a}");
    let list = nfacct("list", None, true);
    let names: Vec<&str> = list["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spare", "ten"], "{list}");
    assert_eq!(list["objects"][1]["pkts"], 20, "{list}");
    assert_eq!(list["objects"][1]["bytes"], 920, "{list}");
    assert_eq!(get(false), (0, 0), "reset by list --reset");
    let busy = nfacct("delete", Some("ten"), false);
    assert_eq!(busy["ok"], false, "{busy}");
    let a = d.load(&rules.replace(" -m nfacct --nfacct-name ten", ""));
    assert_eq!(a["ok"], true, "{a}");
    // Kept without a rule naming it, until deleted.
    assert_eq!(get(false), (0, 0));
    let del = nfacct("delete", Some("ten"), false);
    assert_eq!(del["ok"], true, "{del}");
    assert_eq!(nfacct("get", Some("ten"), false)["ok"], false);
    let f = nfacct("flush", None, false);
    assert_eq!(f["ok"], true, "{f}");
    assert_eq!(nfacct("list", None, false)["objects"], json!([]));
    // rampart ctl prints nfacct's lines.
    assert_eq!(nfacct("add", Some("x"), false)["ok"], true);
    let o = run_ok(
        Command::new(bin("rampart"))
            .args(["ctl", "--socket"])
            .arg(&d.socket)
            .args(["nfacct", "list"]),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "{ pkts = 00000000000000000000, bytes = 00000000000000000000 } = x;\n"
    );
    d.stop();
}
