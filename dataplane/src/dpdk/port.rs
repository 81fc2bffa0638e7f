//! Ethernet port set-up, queues and statistics.

use super::{strerror, DpdkError, Eal, Mempool};
use std::ffi::{CStr, CString};

/// An ethdev port id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

/// A queue index on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u16);

/// The right to poll one RX queue. Exactly one exists per configured (port, queue), so only
/// one lcore can poll it.
#[derive(Debug)]
pub struct RxQueue {
    pub(crate) port: PortId,
    pub(crate) queue: QueueId,
}

/// The right to transmit on one TX queue; one per configured (port, queue).
#[derive(Debug)]
pub struct TxQueue {
    pub(crate) port: PortId,
    pub(crate) queue: QueueId,
}

impl RxQueue {
    pub fn port(&self) -> PortId {
        self.port
    }
    pub fn queue(&self) -> QueueId {
        self.queue
    }
}

impl TxQueue {
    pub fn port(&self) -> PortId {
        self.port
    }
    pub fn queue(&self) -> QueueId {
        self.queue
    }
}

/// How to set a port up.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// RX and TX queues: one of each per worker.
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub promiscuous: bool,
    /// Ask the device to check received TCP/UDP checksums (when it can): conntrack then skips
    /// its own sum for packets the device found good.
    pub rx_checksum: bool,
}

// `RTE_ETH_RX_OFFLOAD_*` (rte_ethdev.h; `RTE_BIT64` macros that bindgen does not expand).
const RX_OFFLOAD_UDP_CKSUM: u64 = 1 << 2;
const RX_OFFLOAD_TCP_CKSUM: u64 = 1 << 3;

/// Device counters, with per-queue RX/TX for the first 16 queues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
    pub queue_rx_packets: Vec<u64>,
    pub queue_tx_packets: Vec<u64>,
}

/// RSS hash types Rampart asks for: addresses and L4 ports of IPv4 and IPv6.
const RSS_HF: u64 = (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 13)
    | (1 << 15);

/// A Toeplitz key made of one repeated 16-bit pattern hashes (a, b) and (b, a) alike, so both
/// directions of a flow land on the same queue (symmetric RSS).
static SYMMETRIC_RSS_KEY: [u8; 40] = {
    let mut k = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// A configured port. Started by [`Port::start`]; stopped and closed on drop.
#[derive(Debug)]
pub struct Port {
    id: PortId,
    name: String,
    driver: String,
    queues: u16,
    rss: bool,
    rx_checksum: bool,
    started: bool,
    handed_out: bool,
}

fn check(port: PortId, op: &'static str, rc: i32) -> Result<(), DpdkError> {
    if rc < 0 {
        Err(DpdkError::Port {
            port: port.0,
            op,
            code: rc,
            msg: strerror(rc),
        })
    } else {
        Ok(())
    }
}

impl Port {
    /// Finds a probed port by its device name (the part of a `--vdev`/`-a` argument before the
    /// first comma, e.g. `net_pcap0` or `0000:03:00.0`).
    pub fn find(_eal: &Eal, device: &str) -> Result<PortId, DpdkError> {
        let name = device.split(',').next().unwrap_or(device);
        let cname = CString::new(name).map_err(|_| DpdkError::BadArgument(name.into()))?;
        let mut id = 0u16;
        // SAFETY: EAL initialised; cname is NUL-terminated; id is a valid out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if rc != 0 {
            return Err(DpdkError::NoSuchPort(name.into()));
        }
        Ok(PortId(id))
    }

    /// Configures `id` with `cfg.queues` RX and TX queues fed from `pool`, symmetric RSS when the
    /// device supports it and more than one queue is asked for, and promiscuous mode if asked.
    pub fn configure(
        _eal: &Eal,
        id: PortId,
        name: &str,
        cfg: &PortConfig,
        pool: &Mempool,
    ) -> Result<Port, DpdkError> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: EAL initialised; info is a valid out-pointer.
        check(id, "dev_info_get", unsafe {
            dpdk_sys::rte_eth_dev_info_get(id.0, &mut info)
        })?;
        let driver = if info.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: driver_name is a static NUL-terminated string owned by the driver.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        if cfg.queues == 0 || cfg.queues > info.max_rx_queues || cfg.queues > info.max_tx_queues {
            return Err(DpdkError::PortLimit {
                port: id.0,
                what: format!(
                    "{name} ({driver}) offers {} RX / {} TX queues, {} needed (one per worker); for net_pcap repeat rx_pcap/tx_pcap, for net_af_packet set qpairs",
                    info.max_rx_queues, info.max_tx_queues, cfg.queues
                ),
            });
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        let rss_hf = RSS_HF & info.flow_type_rss_offloads;
        let rss = cfg.queues > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = SYMMETRIC_RSS_KEY.as_ptr().cast_mut();
            conf.rx_adv_conf.rss_conf.rss_key_len = SYMMETRIC_RSS_KEY.len() as u8;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        let rx_csum = RX_OFFLOAD_UDP_CKSUM | RX_OFFLOAD_TCP_CKSUM;
        let rx_checksum = cfg.rx_checksum && info.rx_offload_capa & rx_csum == rx_csum;
        if rx_checksum {
            conf.rxmode.offloads |= rx_csum;
        }
        // SAFETY: EAL initialised; conf is valid for the call (DPDK copies it and the key, which
        // is static anyway).
        check(id, "configure", unsafe {
            dpdk_sys::rte_eth_dev_configure(id.0, cfg.queues, cfg.queues, &conf)
        })?;
        let (mut rxd, mut txd) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: EAL initialised; out-pointers valid.
        check(id, "adjust_nb_rx_tx_desc", unsafe {
            dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id.0, &mut rxd, &mut txd)
        })?;
        // SAFETY: EAL initialised.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id.0) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..cfg.queues {
            // SAFETY: port configured with `queues` RX queues; NULL rxconf means defaults; the
            // pool outlives the port (closed before the pool is dropped).
            check(id, "rx_queue_setup", unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id.0,
                    q,
                    rxd,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            })?;
            // SAFETY: as above for TX.
            check(id, "tx_queue_setup", unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(id.0, q, txd, socket, std::ptr::null())
            })?;
        }
        if cfg.promiscuous {
            // SAFETY: EAL initialised. Virtual devices may not support it; that is not an error.
            let _ = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id.0) };
        }
        Ok(Port {
            id,
            name: name.into(),
            driver,
            queues: cfg.queues,
            rss,
            rx_checksum,
            started: false,
            handed_out: false,
        })
    }

    pub fn id(&self) -> PortId {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn driver(&self) -> &str {
        &self.driver
    }
    /// True when RX queues are spread by symmetric RSS.
    pub fn rss(&self) -> bool {
        self.rss
    }

    /// True when the device checks received TCP and UDP checksums (RX checksum offload).
    pub fn rx_checksum(&self) -> bool {
        self.rx_checksum
    }

    /// Starts the device.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        // SAFETY: port configured with all its queues set up.
        check(self.id, "start", unsafe {
            dpdk_sys::rte_eth_dev_start(self.id.0)
        })?;
        self.started = true;
        Ok(())
    }

    /// The queue tokens, one RX and one TX per queue index; available once.
    pub fn take_queues(&mut self) -> Option<Vec<(RxQueue, TxQueue)>> {
        if self.handed_out {
            return None;
        }
        self.handed_out = true;
        Some(
            (0..self.queues)
                .map(|q| {
                    (
                        RxQueue {
                            port: self.id,
                            queue: QueueId(q),
                        },
                        TxQueue {
                            port: self.id,
                            queue: QueueId(q),
                        },
                    )
                })
                .collect(),
        )
    }

    /// Device statistics.
    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: EAL initialised; s is a valid out-pointer. On error the zeroed struct is kept.
        let _ = unsafe { dpdk_sys::rte_eth_stats_get(self.id.0, &mut s) };
        let nq = usize::from(self.queues).min(s.q_ipackets.len());
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
            queue_rx_packets: s.q_ipackets[..nq].to_vec(),
            queue_tx_packets: s.q_opackets[..nq].to_vec(),
        }
    }

    /// The device's MAC address (router mode's source address on this port).
    pub fn mac(&self) -> crate::wire::MacAddr {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: EAL initialised; `a` is a valid out-pointer. On error the zeroed address stays.
        let _ = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id.0, &mut a) };
        crate::wire::MacAddr(a.addr_bytes)
    }

    /// Whether the link is up now (for virtual devices: whether the peer is attached, e.g. the
    /// other end of a `net_memif` pair has connected). Does not wait.
    pub fn link_up(&self) -> bool {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: EAL initialised; link is a valid out-pointer; the call does not block.
        let rc = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id.0, &mut link) };
        rc == 0 && link.link_status() != 0
    }

    /// Stops the device (idempotent). Workers must no longer poll it.
    pub fn stop(&mut self) {
        if self.started {
            // SAFETY: port started; the caller has joined the workers polling it.
            let _ = unsafe { dpdk_sys::rte_eth_dev_stop(self.id.0) };
            self.started = false;
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.stop();
        // SAFETY: port stopped; closing releases its queues and any mbufs they held.
        let _ = unsafe { dpdk_sys::rte_eth_dev_close(self.id.0) };
    }
}
