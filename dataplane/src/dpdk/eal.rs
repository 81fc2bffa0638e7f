//! EAL start-up and clean shutdown.

use super::{rte_errno, strerror, DpdkError};
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// A running EAL. Dropping it calls `rte_eal_cleanup`; everything built on it must be dropped
/// first (the borrow of `&Eal` that constructors take makes that hold for ports and mempools).
#[derive(Debug)]
pub struct Eal {
    /// Argument strings handed to `rte_eal_init`; EAL may keep pointers into them.
    _args: Vec<CString>,
}

impl Eal {
    /// Initialises the EAL with `args` (the first is the program name). Only one EAL may exist per
    /// process, ever: DPDK cannot be re-initialised after cleanup.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalTwice);
        }
        let owned: Vec<CString> = args
            .iter()
            .map(|a| {
                CString::new(a.as_ref()).map_err(|_| DpdkError::BadArgument(a.as_ref().into()))
            })
            .collect::<Result<_, _>>()?;
        // rte_eal_init may permute argv; give it a private array of pointers into `owned`.
        let mut argv: Vec<*mut c_char> = owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
        let argc = i32::try_from(argv.len()).map_err(|_| DpdkError::BadArgument("argc".into()))?;
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the EAL (kept in
        // `_args`); EAL init runs once per process (guarded by EAL_STARTED above).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let code = rte_errno();
            return Err(DpdkError::EalInit {
                code,
                msg: strerror(code),
            });
        }
        Ok(Eal { _args: owned })
    }

    /// Lets DPDK's capture tools (`dpdk-dumpcap`, `dpdk-pdump`) attach as secondary processes
    /// and copy packets of any port. Needs the shared runtime configuration (no `--no-shconf`,
    /// no `--in-memory`), so in practice hugepages.
    pub fn enable_capture(&self) -> Result<(), DpdkError> {
        // SAFETY: EAL is initialised; rte_pdump_init registers a multi-process handler and
        // creates its mempool/ring on demand; it is called once, from the main lcore.
        let rc = unsafe { dpdk_sys::rte_pdump_init() };
        if rc < 0 {
            let code = rte_errno();
            return Err(DpdkError::Capture {
                code,
                msg: strerror(code),
            });
        }
        Ok(())
    }

    /// Number of Ethernet ports the EAL probed.
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised (self exists).
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// The main lcore (runs the control thread).
    pub fn main_lcore(&self) -> super::LcoreId {
        // SAFETY: EAL is initialised.
        super::LcoreId(unsafe { dpdk_sys::rte_get_main_lcore() })
    }

    /// Worker lcores enabled by the EAL arguments, in order, excluding the main lcore.
    pub fn worker_lcores(&self) -> Vec<super::LcoreId> {
        let mut out = Vec::new();
        let mut i: u32 = u32::MAX; // -1: start of iteration
        loop {
            // SAFETY: EAL is initialised; rte_get_next_lcore takes any index and returns
            // RTE_MAX_LCORE when there are no more (skip_main = 1, no wrap).
            i = unsafe { dpdk_sys::rte_get_next_lcore(i, 1, 0) };
            if i >= dpdk_sys::RTE_MAX_LCORE {
                return out;
            }
            out.push(super::LcoreId(i));
        }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by this value; waiting for lcores has no precondition.
        unsafe { dpdk_sys::rte_eal_mp_wait_lcore() };
        // SAFETY: every lcore is idle (waited above) and nothing built on the EAL outlives it.
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}

/// The time-stamp counter, read once per burst for drain timers and cycle accounting.
#[inline]
pub fn tsc() -> u64 {
    // Inline on x86-64 (DPDK's rte_rdtsc is the same instruction): a call into the C shim per
    // loop iteration cost more than the read.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC reads the CPU's time-stamp counter; no memory is touched.
    return unsafe { std::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the CPU's TSC; no memory is touched.
    unsafe {
        dpdk_sys::rampart_rdtsc()
    }
}

/// TSC ticks per second as measured by the EAL.
pub fn tsc_hz() -> u64 {
    // SAFETY: valid once EAL is initialised; returns 0 before, which callers treat as unknown.
    unsafe { dpdk_sys::rampart_tsc_hz() }
}
