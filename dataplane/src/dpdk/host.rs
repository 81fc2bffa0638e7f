//! What the host's C library knows that Rust's standard library does not tell: the local
//! timezone's offset from UTC (`-m time --kerneltz`).

/// The host's offset east of UTC now, in seconds; 0 when the C library cannot tell.
pub fn utc_offset_s() -> i32 {
    // SAFETY: `time` with a null pointer only returns the current time.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: `libc::tm` is plain integers and a pointer, for which all zeroes is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: `localtime_r` reads `now` and writes only the `tm` it is given, which lives on
    // this stack.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return 0;
    }
    i32::try_from(tm.tm_gmtoff).unwrap_or(0)
}
