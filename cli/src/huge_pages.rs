//! Huge pages for the simulator. A large simulation keeps gigabytes of small objects (each
//! peer's connections, maps and timers) and visits them at random, so with 4 KiB pages
//! nearly every visit also misses the TLB. glibc backs its heap with transparent huge pages
//! when `GLIBC_TUNABLES` says so, but reads it only at start: so a simulation re-executes
//! itself once with it set (10,000 simulated peers: a sixth less wall time, same report).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The tunable (glibc 2.35 and later; older ones ignore it): `madvise` the heap for THP.
const TUNABLE: &str = "glibc.malloc.hugetlb";

/// Where the kernel says whether transparent huge pages may be used at all.
const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Replaces this process with itself, with huge pages asked of glibc, unless they are
/// already asked (or refused) in `GLIBC_TUNABLES`, cannot be had here, or the exec fails:
/// then it returns, and the run goes on with small pages.
pub fn reexec_for_simulation() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || !kernel_allows() {
        return;
    }
    let Some(tunables) = with_huge_pages(std::env::var_os("GLIBC_TUNABLES")) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command.args(args).env("GLIBC_TUNABLES", tunables).exec();
    log::debug!("running without huge pages: re-executing failed: {error}");
}

/// Whether the kernel lets a process ask for transparent huge pages (`never` refuses).
fn kernel_allows() -> bool {
    std::fs::read_to_string(THP_ENABLED).is_ok_and(|s| !s.contains("[never]"))
}

/// `GLIBC_TUNABLES` with huge pages asked for, or `None` if it already names the tunable
/// (set by the user, or by the run that re-executed this one).
fn with_huge_pages(tunables: Option<OsString>) -> Option<OsString> {
    let huge = format!("{TUNABLE}=1");
    match tunables {
        None => Some(huge.into()),
        Some(t) if t.to_string_lossy().contains(TUNABLE) => None,
        Some(t) if t.is_empty() => Some(huge.into()),
        Some(mut t) => {
            t.push(":");
            t.push(huge);
            Some(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_are_asked_once_beside_other_tunables() {
        let asked = |t: Option<&str>| with_huge_pages(t.map(OsString::from));
        let set = Some(OsString::from("glibc.malloc.hugetlb=1"));
        assert_eq!(asked(None), set);
        assert_eq!(asked(Some("")), set);
        assert_eq!(
            asked(Some("glibc.malloc.arena_max=2")),
            Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1".into())
        );
        // Already asked, or refused by the user: left as it is, so no second exec.
        assert_eq!(asked(Some("glibc.malloc.hugetlb=1")), None);
        assert_eq!(asked(Some("glibc.malloc.hugetlb=0")), None);
    }
}
