//! Generates bindings against the system DPDK found through pkg-config and compiles the C shim.
//! Fails with a message naming the packages to install when DPDK or libclang is missing.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_DPDK: &str = "22.11";
const INSTALL_HINT: &str =
    "install them with: apt-get install dpdk libdpdk-dev libclang-dev pkg-config (Debian/Ubuntu)";

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: dpdk-sys: {msg}\n       {INSTALL_HINT}\n");
    std::process::exit(1);
}

fn dpdk_cflags() -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run pkg-config ({e})")));
    if !out.status.success() {
        fail("pkg-config cannot find libdpdk");
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `-include X` comes as two words; keep the pairs together and drop flags clang or cc should not
/// see (`-march` is chosen by the Rust target for the shim and meaningless for bindgen).
fn split_flags(words: &[String]) -> Vec<String> {
    let mut flags = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "-include" {
            if let Some(h) = it.next() {
                flags.push(format!("-include{h}"));
            }
        } else if !w.starts_with("-march") {
            flags.push(w.clone());
        }
    }
    flags
}

fn libclang_present() -> bool {
    if env::var_os("LIBCLANG_PATH").is_some() {
        return true;
    }
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
    ];
    let llvm = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
        .map(|e| e.path().join("lib"));
    dirs.iter().map(PathBuf::from).chain(llvm).any(|d| {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("libclang") && n.contains(".so")
            })
    })
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = pkg_config::Config::new()
        .atleast_version(MIN_DPDK)
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            fail(&format!(
                "DPDK >= {MIN_DPDK} not found through pkg-config: {e}"
            ))
        });
    println!("cargo:rustc-env=RAMPART_DPDK_VERSION={}", lib.version);

    let flags = split_flags(&dpdk_cflags());

    let mut shim = cc::Build::new();
    shim.file("shim.c")
        .include(".")
        .opt_level(3)
        .warnings(false);
    for f in &flags {
        shim.flag(f);
    }
    shim.flag("-mssse3").flag("-msse4.2");
    shim.compile("rampart_shim");

    if !libclang_present() {
        fail("libclang (needed by bindgen) not found");
    }

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_arg("-I.")
        .clang_args(flags.iter().cloned())
        .clang_arg("-msse4.2")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .layout_tests(false)
        .derive_default(true)
        .prepend_enum_name(false)
        .generate_comments(false)
        // Packed-and-aligned protocol headers that bindgen cannot lay out; Rampart parses those
        // bytes itself, so they stay opaque.
        .opaque_type("rte_gtp_.*")
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4");
    for f in [
        "rte_eal_.*",
        "rte_eth_.*",
        "rte_pktmbuf_.*",
        "rte_mempool_.*",
        "rte_lcore_.*",
        "rte_get_.*",
        "rte_socket_id",
        "rte_strerror",
        "rte_acl_.*",
        "rte_ring_create",
        "rte_ring_free",
        "rte_mbuf_.*",
        "rte_zmalloc.*",
        "rte_free",
        "rte_memory_.*",
        "rte_malloc_.*",
        "rte_pdump_init",
        "rte_pdump_uninit",
        "rampart_.*",
    ] {
        builder = builder.allowlist_function(f);
    }
    for t in [
        "rte_mbuf",
        "rte_eth_conf",
        "rte_eth_stats",
        "rte_eth_dev_info",
        "rte_eth_link",
        "rte_ether_addr",
        "rte_acl_.*",
        "rte_eth_rss_conf",
        "rte_eth_rxconf",
        "rte_eth_txconf",
    ] {
        builder = builder.allowlist_type(t);
    }
    for v in ["RTE_.*", "ETH_.*", "SOCKET_ID_ANY", "RING_F_.*", "E_RTE_.*"] {
        builder = builder.allowlist_var(v);
    }

    let bindings = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.generate()))
        .unwrap_or_else(|_| fail("bindgen could not load libclang"))
        .unwrap_or_else(|e| fail(&format!("bindgen failed on the DPDK headers: {e}")));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));
}
