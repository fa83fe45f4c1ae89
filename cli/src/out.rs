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

/// Writes many lines to stdout in one go, buffered and flushed once at the end: a list of
/// 25,000 files took 25,000 write calls line by line (100 ms; 10 ms buffered).
pub fn lines(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = write(&mut out).and_then(|()| out.flush());
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
