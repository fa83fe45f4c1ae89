//! drizzle-core must stay sans-IO: no sockets, files, threads, clocks or OS randomness, and
//! no dependency on mio. (core/clippy.toml enforces the same at lint time.)

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::thread",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "OsRng",
    "from_entropy",
    "HashMap",
    "HashSet",
];

fn core_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_source_touches_no_io_clock_or_os_randomness() {
    let mut files = Vec::new();
    rust_files(&core_dir().join("src"), &mut files);
    assert!(files.len() > 5, "core sources not found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Core's one hash map: a fixed hasher, no random keys (clippy.toml's reason for
        // the rule is an order that differs from run to run).
        let deterministic_map = file.ends_with("core/src/idmap.rs");
        for word in FORBIDDEN {
            if deterministic_map && word.starts_with("Hash") {
                continue;
            }
            assert!(
                !text.contains(word),
                "{} mentions {word}: core must stay sans-IO",
                file.display()
            );
        }
    }
}

#[test]
fn core_does_not_depend_on_mio() {
    let manifest = std::fs::read_to_string(core_dir().join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or_default();
    for line in deps.lines() {
        let name = line.split(['=', '.']).next().unwrap_or_default().trim();
        assert!(
            !["mio", "tokio", "getrandom", "socket2"].contains(&name),
            "core depends on {name}"
        );
    }
}
