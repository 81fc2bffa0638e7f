//! DPDK's own tools against a running Rampart: the telemetry socket (`dpdk-telemetry.py`) lists
//! Rampart's ports and their counters, and `dpdk-dumpcap` captures a port's packets through pdump.
//! Capture needs the EAL's shared configuration, hence hugepages: the test reserves a few 2 MB
//! pages (mounting hugetlbfs when nothing is mounted) and gives them back afterwards.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, root_or_skip, run, toml_array, unique};

const NR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

/// Reserved hugepages, returned on drop; the mount it made is unmounted on drop too.
struct Hugepages {
    before: u64,
    mounted: Option<String>,
}

impl Hugepages {
    fn reserve(pages: u64) -> Option<Hugepages> {
        let before: u64 = std::fs::read_to_string(NR).ok()?.trim().parse().ok()?;
        std::fs::write(NR, (before + pages).to_string()).ok()?;
        let now: u64 = std::fs::read_to_string(NR).ok()?.trim().parse().ok()?;
        let mut h = Hugepages {
            before,
            mounted: None,
        };
        if now < before + pages {
            return None;
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        if !mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        {
            let dir = "/dev/hugepages".to_string();
            std::fs::create_dir_all(&dir).ok()?;
            if !run(Command::new("mount").args(["-t", "hugetlbfs", "nodev", &dir]))
                .status
                .success()
            {
                return None;
            }
            h.mounted = Some(dir);
        }
        Some(h)
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        if let Some(dir) = &self.mounted {
            let _ = Command::new("umount").arg(dir).status();
        }
        let _ = std::fs::write(NR, self.before.to_string());
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, prefix: &str, eal: &[String]) -> Daemon {
    let cfg = format!(
        "[eal]\nargs = {}\n[[port]]\nname = \"a\"\ndevice = \"net_null{prefix}a\"\n[[port]]\nname = \"b\"\ndevice = \"net_null{prefix}b\"\n[bridge]\npairs = [[\"a\", \"b\"]]\nnon_ip = \"forward\"\n[management]\nsocket = \"{}\"\n[mempool]\nmbufs = 4095\ncache = 64\n[rings]\nrx_desc = 512\ntx_desc = 512\n",
        toml_array(eal),
        dir.join("m.sock").display()
    );
    std::fs::write(dir.join("cfg.toml"), cfg).unwrap();
    let child = Command::new(bin("rampart"))
        .args(["run", "--config"])
        .arg(dir.join("cfg.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("m.sock").exists() {
        assert!(Instant::now() < deadline, "rampart did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

fn telemetry(prefix: &str, query: &str) -> serde_json::Value {
    let mut c = Command::new("dpdk-telemetry.py")
        .args(["-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dpdk-telemetry.py (package dpdk-dev)");
    writeln!(c.stdin.take().unwrap(), "{query}").unwrap();
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no answer to {query}: {text}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn telemetry_and_dumpcap_work_against_a_running_rampart() {
    if !root_or_skip("telemetry_and_dumpcap_work_against_a_running_rampart") {
        return;
    }
    let Some(_pages) = Hugepages::reserve(192) else {
        assert!(
            !tests::in_ci(),
            "cannot reserve hugepages for the capture test"
        );
        eprintln!("SKIPPED telemetry_and_dumpcap: no hugepages could be reserved");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("rptools");
    let eal: Vec<String> = [
        "-m",
        "256",
        "--no-pci",
        "--file-prefix",
        &prefix,
        "--lcores=0@0,1@1",
        "--log-level",
        "*:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _d = start(dir.path(), &prefix, &eal);

    let list = telemetry(&prefix, "/ethdev/list");
    assert_eq!(list["/ethdev/list"], serde_json::json!([0, 1]), "{list}");
    std::thread::sleep(Duration::from_millis(200));
    let stats = telemetry(&prefix, "/ethdev/stats,0");
    assert!(
        stats["/ethdev/stats"]["ipackets"].as_u64().unwrap() > 0,
        "{stats}"
    );

    let cap = dir.path().join("cap.pcapng");
    let out = run(Command::new("timeout")
        .args([
            "60",
            "dpdk-dumpcap",
            &format!("--file-prefix={prefix}"),
            "-i",
            "0",
            "-c",
            "20",
            "-q",
            "-P",
            "-w",
        ])
        .arg(&cap));
    assert!(
        out.status.success(),
        "dpdk-dumpcap failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = control::pcap::read_frames(&cap).unwrap();
    assert!(frames.len() >= 20, "captured {} frames", frames.len());
}
