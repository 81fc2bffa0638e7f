//! Launching work on lcores.

use super::{DpdkError, Eal};
use std::ffi::{c_int, c_void};

/// An EAL logical core id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LcoreId(pub u32);

impl std::fmt::Display for LcoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("lcore is busy or not enabled in the EAL arguments (code {0})")]
    Busy(i32),
}

type Job = Box<dyn FnOnce() + Send + 'static>;

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the pointer produced by Box::into_raw in `launch` below, handed to exactly
    // one lcore and reclaimed exactly once here.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    job();
    0
}

impl Eal {
    /// Runs `job` on worker lcore `lcore`. Join with [`Eal::wait_all`].
    pub fn launch<F: FnOnce() + Send + 'static>(
        &self,
        lcore: LcoreId,
        job: F,
    ) -> Result<(), DpdkError> {
        let boxed: Box<Job> = Box::new(Box::new(job));
        let arg = Box::into_raw(boxed).cast::<c_void>();
        // SAFETY: EAL is initialised; `trampoline` has the lcore_function_t signature and takes
        // ownership of `arg` when it runs.
        let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
        if rc != 0 {
            // SAFETY: the launch failed, so the lcore never saw `arg`; reclaim it to free it.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
            return Err(DpdkError::Launch(lcore.0, LaunchError::Busy(rc)));
        }
        Ok(())
    }

    /// Waits until every worker lcore has returned from its job.
    pub fn wait_all(&self) {
        // SAFETY: EAL is initialised; called from the main lcore.
        unsafe { dpdk_sys::rte_eal_mp_wait_lcore() }
    }
}
