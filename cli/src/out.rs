//! Lines for the user on stdout and stderr that never panic: a closed pipe (`| head -1`) or
//! a closed terminal must not kill a sharer that is serving others, so write errors are
//! ignored here, once, instead of at every print.

use std::io::Write;

/// Writes one line to stdout and flushes it (scripts read the first lines while we run).
pub fn line(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(text).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

/// Writes one line to stderr.
pub fn error_line(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `say!` that survives a closed stdout.
macro_rules! say {
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}

/// `warn_user!` that survives a closed stderr.
macro_rules! warn_user {
    ($($arg:tt)*) => { $crate::out::error_line(format_args!($($arg)*)) };
}

pub(crate) use {say, warn_user};
