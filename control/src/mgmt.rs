//! The management socket: a Unix stream socket carrying one JSON request and one JSON answer per
//! line. Each connection is served by its own thread (bounded in number); requests are bounded in
//! size and time; a malformed request gets an error answer and never stops the daemon.
//!
//! Requests: `{"cmd": "rules load", "file": PATH}`, `{"cmd": "rules show"}`, `{"cmd": "stats"}`,
//! `{"cmd": "conntrack list"}` (with `"max"` and a `"filter"`), `{"cmd": "conntrack flush"}`,
//! `{"cmd": "conntrack delete", "filter": F}`, `{"cmd": "conntrack count"}` (with a
//! `"filter"`; the filter's form is [`crate::ctfilter`]'s, versioned), `{"cmd": "nat list"}`,
//! `{"cmd": "ipset", "line": "add NAME ENTRY ..."}` (one ipset command: add, del, test, list,
//! save, flush, swap) and `{"cmd": "ipset restore", "file": PATH}` or `"text": LINES` (with
//! `"exist": true` for `-exist`); for tests only, `{"cmd": "clock shift", "ns": N}` (the wall
//! clock `-m time` reads, moved by N ns); `{"cmd": "nfacct", "op": OP, "name": NAME, "reset":
//! BOOL}` (accounting objects: add, list, get, delete, flush).
//! Answers: `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.

use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Connections served at once; more are answered with an error and closed.
pub const MAX_CLIENTS: usize = 32;
/// How long a client may take to send a line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "cmd", deny_unknown_fields)]
pub enum Request {
    #[serde(rename = "rules load")]
    RulesLoad {
        /// iptables-save rules (IPv4); the configured file when absent.
        file: Option<String>,
        /// ip6tables-save rules (IPv6).
        file6: Option<String>,
        /// Security groups.
        groups: Option<String>,
        /// ipset sets for `-m set` (`ipset save` output); the configured file when absent.
        #[serde(default)]
        ipsets: Option<String>,
    },
    #[serde(rename = "rules show")]
    RulesShow,
    #[serde(rename = "stats")]
    Stats,
    #[serde(rename = "conntrack list")]
    ConntrackList {
        /// Most connections in the answer (default [`CONNTRACK_LIST_MAX`]).
        max: Option<u64>,
        /// Which connections ([`crate::ctfilter::from_json`]); all when absent.
        #[serde(default)]
        filter: Option<Value>,
    },
    #[serde(rename = "conntrack flush")]
    ConntrackFlush,
    /// Removes the connections the filter selects (`{"version": 1}` selects all).
    #[serde(rename = "conntrack delete")]
    ConntrackDelete { filter: Value },
    /// How many connections the filter selects (all when absent).
    #[serde(rename = "conntrack count")]
    ConntrackCount {
        #[serde(default)]
        filter: Option<Value>,
    },
    #[serde(rename = "nat list")]
    NatList {
        /// Most bindings in the answer (default [`CONNTRACK_LIST_MAX`]).
        max: Option<u64>,
    },
    /// For tests only: moves the wall clock the daemon reads (`-m time`) by `ns` from the
    /// host's, as a step of the host's clock would, without changing the host's clock. The
    /// workers follow within the control thread's next re-read of the clock (a quarter of a
    /// second). `ns` 0 takes the host's clock again.
    #[serde(rename = "clock shift")]
    ClockShift { ns: i64 },
    /// One ipset command against the live sets.
    #[serde(rename = "ipset")]
    Ipset { line: String },
    /// ipset restore: lines of add, del, flush, create and swap, applied all or nothing.
    #[serde(rename = "ipset restore")]
    IpsetRestore {
        file: Option<String>,
        text: Option<String>,
        #[serde(default)]
        exist: bool,
    },
    /// Accounting objects (`-m nfacct`): `op` is add, list, get, delete or flush, as nfacct(8)
    /// has them; `name` for add, get and delete; `reset` for list and get.
    #[serde(rename = "nfacct")]
    Nfacct {
        op: String,
        name: Option<String>,
        #[serde(default)]
        reset: bool,
    },
}

/// Connections a `conntrack list` answer holds unless the request asks for more.
pub const CONNTRACK_LIST_MAX: u64 = 100_000;

/// Parses one request line into a request or an error answer.
pub fn parse_request(line: &str) -> Result<Request, Value> {
    let v: Value = serde_json::from_str(line).map_err(|e| error(format!("malformed JSON: {e}")))?;
    if !v.is_object() {
        return Err(error("a request is a JSON object with a \"cmd\" field"));
    }
    match v.get("cmd").and_then(Value::as_str) {
        None => return Err(error("missing \"cmd\"")),
        Some(c) if !KNOWN.contains(&c) => {
            return Err(error(format!(
                "unknown command {c:?}; known: {}",
                KNOWN.join(", ")
            )))
        }
        Some(c) => {
            let allowed: &[&str] = match c {
                "rules load" => &["cmd", "file", "file6", "groups", "ipsets"],
                "ipset" => &["cmd", "line"],
                "ipset restore" => &["cmd", "file", "text", "exist"],
                "conntrack list" => &["cmd", "max", "filter"],
                "conntrack delete" | "conntrack count" => &["cmd", "filter"],
                "nat list" => &["cmd", "max"],
                "clock shift" => &["cmd", "ns"],
                "nfacct" => &["cmd", "op", "name", "reset"],
                _ => &["cmd"],
            };
            if let Some(k) = v
                .as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .find(|k| !allowed.contains(&k.as_str()))
            {
                return Err(error(format!("bad request: unknown field {k:?} for {c:?}")));
            }
        }
    }
    serde_json::from_value(v).map_err(|e| error(format!("bad request: {e}")))
}

const KNOWN: [&str; 12] = [
    "rules load",
    "rules show",
    "stats",
    "conntrack list",
    "conntrack flush",
    "conntrack delete",
    "conntrack count",
    "nat list",
    "clock shift",
    "ipset",
    "ipset restore",
    "nfacct",
];

/// An error answer.
pub fn error(msg: impl Into<String>) -> Value {
    json!({ "ok": false, "error": msg.into() })
}

/// Serves requests on a Unix socket until dropped.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What answers requests (runs on connection threads; must be quick or hand off).
pub type Handler = Arc<dyn Fn(Request) -> Value + Send + Sync>;

/// Management errors at start-up.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    #[error("management socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Server {
    /// Binds `path` (replacing a stale socket), sets `mode` (e.g. 0o600) and starts serving.
    pub fn start(path: &Path, mode: u32, handler: Handler) -> Result<Server, MgmtError> {
        let wrap = |source| MgmtError::Bind {
            path: path.into(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                // A live daemon answers; a stale socket does not and is replaced.
                if UnixStream::connect(path).is_ok() {
                    return Err(wrap(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another daemon is listening",
                    )));
                }
                std::fs::remove_file(path).map_err(wrap)?;
            } else {
                return Err(wrap(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                )));
            }
        }
        let listener = UnixListener::bind(path).map_err(wrap)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(wrap)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rampart-mgmt".into())
            .spawn(move || accept_loop(listener, handler, s))
            .map_err(wrap)?;
        Ok(Server {
            path: path.into(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept loop blocks in accept(): one connection wakes it to see the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, handler: Handler, stop: Arc<AtomicBool>) {
    let clients = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok(_) if stop.load(Ordering::SeqCst) => return,
            Ok((mut stream, _)) => {
                if clients.load(Ordering::SeqCst) >= MAX_CLIENTS {
                    let _ = writeln!(stream, "{}", error("too many clients; try again"));
                    continue;
                }
                clients.fetch_add(1, Ordering::SeqCst);
                let (h, c, s) = (handler.clone(), clients.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("rampart-mgmt-client".into())
                    .spawn(move || {
                        serve(stream, &h, &s);
                        c.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    clients.fetch_sub(1, Ordering::SeqCst);
                }
            }
            // Out of descriptors and the like: back off a little rather than spin.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Serves one connection: any number of request lines, each answered with one line.
fn serve(stream: UnixStream, handler: &Handler, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        buf.clear();
        // Read at most one byte more than the limit so an oversized line is detected.
        let n = match reader
            .by_ref()
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return, // closed, timed out, or reset mid-request
            Ok(n) => n,
        };
        let answer = if n > MAX_REQUEST_BYTES && buf.last() != Some(&b'\n') {
            let _ = writeln!(
                out,
                "{}",
                error(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
            );
            return; // the rest of the line cannot be framed: close
        } else {
            match std::str::from_utf8(&buf) {
                Err(_) => error("request is not UTF-8"),
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => match parse_request(line.trim()) {
                    Ok(req) => handler(req),
                    Err(e) => e,
                },
            }
        };
        if writeln!(out, "{answer}").is_err() {
            return;
        }
    }
}

/// Sends one request and reads one answer (the `rampart ctl` client).
pub fn request(path: &Path, req: &Value, timeout: Duration) -> std::io::Result<Value> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    writeln!(s, "{req}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_errors_explain() {
        assert_eq!(parse_request(r#"{"cmd":"stats"}"#), Ok(Request::Stats));
        assert_eq!(
            parse_request(r#"{"cmd":"rules load","file":"/x"}"#),
            Ok(Request::RulesLoad {
                file: Some("/x".into()),
                file6: None,
                groups: None,
                ipsets: None
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"rules load","file":null,"ipsets":"/s"}"#),
            Ok(Request::RulesLoad {
                file: None,
                file6: None,
                groups: None,
                ipsets: Some("/s".into())
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"ipset","line":"add f2b 192.0.2.1"}"#),
            Ok(Request::Ipset {
                line: "add f2b 192.0.2.1".into()
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"ipset restore","text":"flush\n","exist":true}"#),
            Ok(Request::IpsetRestore {
                file: None,
                text: Some("flush\n".into()),
                exist: true
            })
        );
        let e = parse_request(r#"{"cmd":"ipset","line":"x","set":"y"}"#).unwrap_err();
        assert!(
            e["error"].as_str().unwrap().contains("unknown field"),
            "{e}"
        );
        let e = parse_request("{nope").unwrap_err();
        assert!(e["error"].as_str().unwrap().contains("malformed"));
        let e = parse_request(r#"{"cmd":"reboot"}"#).unwrap_err();
        assert!(e["error"].as_str().unwrap().contains("unknown command"));
        let e = parse_request(r#"[1,2]"#).unwrap_err();
        assert!(e["error"].as_str().unwrap().contains("object"));
        let e = parse_request(r#"{"cmd":"stats","x":1}"#).unwrap_err();
        assert!(e["error"].as_str().unwrap().contains("bad request"));
        assert_eq!(
            parse_request(r#"{"cmd":"conntrack delete","filter":{"version":1,"proto":17}}"#),
            Ok(Request::ConntrackDelete {
                filter: json!({"version": 1, "proto": 17})
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"conntrack list","max":3}"#),
            Ok(Request::ConntrackList {
                max: Some(3),
                filter: None
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"conntrack count"}"#),
            Ok(Request::ConntrackCount { filter: None })
        );
        for bad in [
            r#"{"cmd":"conntrack delete"}"#,
            r#"{"cmd":"conntrack delete","filter":{"version":1},"max":1}"#,
            r#"{"cmd":"conntrack flush","filter":{"version":1}}"#,
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(
                e["error"].as_str().unwrap().contains("bad request"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            parse_request(r#"{"cmd":"clock shift","ns":-5}"#),
            Ok(Request::ClockShift { ns: -5 })
        );
        for bad in [
            r#"{"cmd":"clock shift"}"#,
            r#"{"cmd":"clock shift","ns":"soon"}"#,
            r#"{"cmd":"clock shift","ns":1e30}"#,
            r#"{"cmd":"clock shift","ns":1,"x":2}"#,
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(
                e["error"].as_str().unwrap().contains("bad request"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn server_survives_abuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let handler: Handler = Arc::new(|r| json!({"ok": true, "echo": format!("{r:?}")}));
        let server = Server::start(&path, 0o600, handler).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Malformed, unknown, oversized, and disconnect mid-request.
        let a = request(&path, &json!("junk"), Duration::from_secs(5)).unwrap();
        assert_eq!(a["ok"], false);
        {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(b"{\"cmd\": \"sta").unwrap();
        }
        {
            let mut s = UnixStream::connect(&path).unwrap();
            let big = vec![b'x'; MAX_REQUEST_BYTES + 10];
            let _ = s.write_all(&big);
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            assert!(line.contains("longer than"), "{line}");
        }
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || {
                    request(&p, &json!({"cmd": "stats"}), Duration::from_secs(5)).unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap()["ok"], true);
        }
        // A second server on the same live socket is refused.
        assert!(Server::start(&path, 0o600, Arc::new(|_| json!({}))).is_err());
        drop(server);
        assert!(!path.exists());
    }
}
