//! Hostile input and faults over real TCP on 127.0.0.1: bad bytes and idle crowds do not
//! stop a tracker, a dying or lying holder does not stop a download, a restarted tracker is
//! re-filled by its peers, and disk trouble ends cleanly.

// Test code: a panic here is how a failure is reported.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

fn list_json(tracker: &str) -> (i32, Vec<serde_json::Value>) {
    let out = drizzle()
        .args(["list", "--tracker", tracker, "--json"])
        .output()
        .unwrap();
    (code(&out), events(&out))
}

/// Whether the server closes `stream` within a few seconds (EOF or reset).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // the tracker's hello and error reply
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn bad_bytes_close_only_that_connection() {
    let (_t, tr) = tracker();
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "A", b"content");
    let (_p, _) = share(d.path(), &tr, &["A"], &[]);
    let hello_v99 = [7u8, 0, 0, 0, 0, b'D', b'R', b'Z', b'L', 99, 1];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("4 GiB length prefix", vec![0xff, 0xff, 0xff, 0xff]),
        ("wrong protocol version", hello_v99.to_vec()),
    ];
    for (what, bytes) in cases {
        let mut s = TcpStream::connect(&tr).unwrap();
        s.write_all(&bytes).unwrap();
        assert!(closed_by_server(&mut s), "{what}: connection left open");
    }
    // Half a frame, then EOF.
    let mut s = TcpStream::connect(&tr).unwrap();
    s.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_server(&mut s));
    let (code, files) = list_json(&tr);
    assert_eq!(code, 0);
    assert_eq!(files.len(), 1, "the honest peer's file is still listed");
}

/// A connection to `addr` that leaves from `ip` (another loopback address plays another
/// host).
fn connect_from(ip: &str, addr: &str) -> TcpStream {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let local: std::net::SocketAddr = format!("{ip}:0").parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

#[test]
fn three_hundred_idle_connections_do_not_lock_out_list() {
    let (_t, tr) = tracker();
    // From three other hosts, 100 each: under the per-address cap.
    let idle: Vec<TcpStream> = (0..300)
        .map(|i| connect_from(&format!("127.0.0.{}", 2 + i % 3), &tr))
        .collect();
    let started = Instant::now();
    let (code, _) = list_json(&tr);
    assert_eq!(code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "list took {:?}",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn one_address_cannot_take_every_connection() {
    let (_t, tr) = tracker();
    let mut crowd: Vec<TcpStream> = (0..200).map(|_| connect_from("127.0.0.2", &tr)).collect();
    // Past the cap, the tracker closes what that address opens at once.
    let mut last = crowd.pop().unwrap();
    assert!(
        closed_by_server(&mut last),
        "the 200th connection stayed open"
    );
    let (code, _) = list_json(&tr);
    assert_eq!(code, 0, "another address is still served");
    drop(crowd);
}

#[test]
fn holder_dies_mid_transfer() {
    let (_t, tr) = tracker();
    let (d1, d2, out) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let content = data(64 * CHUNK, 9);
    write(d1.path(), "A", &content);
    write(d2.path(), "A", &content);
    let limit = ["--upload-limit", "1MB/s"];
    let (_p1, _) = share(d1.path(), &tr, &["A"], &limit);
    let (mut p2, _) = share(d2.path(), &tr, &["A"], &limit);
    let mut get = Proc::start(&[
        "get",
        "A",
        "--tracker",
        &tr,
        "--out",
        out.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--json",
    ]);
    for _ in 0..10 {
        get.wait_line("verified chunks", |l| l.contains("\"event\":\"verified\""));
    }
    p2.child.kill().unwrap();
    get.wait_line("the download to finish", |l| {
        l.contains("\"event\":\"done\"")
    });
    assert!(get.child.wait().unwrap().success());
    assert_eq!(std::fs::read(out.path().join("A")).unwrap(), content);
}

#[test]
fn corrupt_holder_is_dropped_and_alone_it_is_rejected() {
    let (_t, tr) = tracker();
    let (good, bad) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let content = data(24 * CHUNK, 10);
    write(good.path(), "A", &content);
    write(bad.path(), "A", &content);
    let (mut p_good, _) = share(good.path(), &tr, &["A"], &[]);
    let (_p_bad, bad_addr) = share(bad.path(), &tr, &["A"], &[]);
    // The second holder's copy rots after it registered.
    let mut rotten = content.clone();
    for b in rotten.iter_mut() {
        *b ^= 0x5a;
    }
    write(bad.path(), "A", &rotten);
    for _ in 0..3 {
        let out_dir = tempfile::tempdir().unwrap();
        let out = get("A", &tr, out_dir.path(), &[]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(std::fs::read(out_dir.path().join("A")).unwrap(), content);
        let ev = events(&out);
        let from_bad = of_kind(&ev, "verified")
            .iter()
            .filter(|e| e["peer"] == bad_addr.as_str())
            .count();
        assert_eq!(from_bad, 0, "nothing from the corrupt holder was accepted");
        let mismatches = of_kind(&ev, "mismatch");
        assert!(mismatches.iter().all(|e| e["peer"] == bad_addr.as_str()));
        // Copies it had sent before the first verdict may still be judged (hashing runs
        // beside receiving), but it is asked for nothing more.
        let caught = ev.iter().position(|e| e["event"] == "mismatch");
        let asked_after = ev
            .iter()
            .skip(caught.unwrap_or(ev.len()))
            .filter(|e| e["event"] == "request" && e["peer"] == bad_addr.as_str())
            .count();
        assert_eq!(
            asked_after,
            0,
            "the corrupt holder was asked again after its first mismatch\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    p_good.child.kill().unwrap();
    p_good.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the tracker hears the session close
    let out_dir = tempfile::tempdir().unwrap();
    let out = get("A", &tr, out_dir.path(), &[]);
    assert_eq!(code(&out), 3, "only a corrupt holder: rejected");
    let ev = events(&out);
    assert!(!of_kind(&ev, "rejected")[0]["chunks"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(!out_dir.path().join("A").exists());
    // As a person sees it: each bad chunk named once, then the verdict once.
    let dir = out_dir.path().to_str().unwrap();
    let plain = ["get", "A", "--tracker", &tr, "--out", dir];
    let out = drizzle().args(plain).output().unwrap();
    assert_eq!(code(&out), 3);
    let said = [out.stdout, out.stderr].concat();
    let said = String::from_utf8_lossy(&said);
    let lines: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("HASH MISMATCH"))
        .collect();
    assert!(!lines.is_empty(), "{said}");
    for line in &lines {
        let told = said.lines().filter(|l| l.contains(line.trim())).count();
        assert_eq!(told, 1, "said more than once: {line}\n{said}");
    }
    assert_eq!(said.matches("rejected").count(), 1, "{said}");
}

#[test]
fn restarted_tracker_is_refilled_by_its_peers() {
    let (mut t, tr) = tracker();
    let (d, out1, out2) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let content = data(40 * CHUNK, 11);
    write(d.path(), "A", &content);
    let (mut sharer, _) = share(d.path(), &tr, &["A"], &["--upload-limit", "1MB/s"]);
    // A download in progress when the tracker goes away.
    let mut slow = Proc::start(&[
        "get",
        "A",
        "--tracker",
        &tr,
        "--out",
        out1.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--json",
    ]);
    slow.wait_line("a verified chunk", |l| l.contains("\"event\":\"verified\""));
    t.child.kill().unwrap();
    t.child.wait().unwrap();
    let mut t2 = Proc::start(&["tracker", "--listen", &tr]);
    assert_eq!(t2.listening(), tr);
    let started = Instant::now();
    sharer.wait_line("re-registration", |l| l == "shared A");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "re-registered after {:?}",
        started.elapsed()
    );
    let (code_list, files) = list_json(&tr);
    assert_eq!(code_list, 0);
    assert_eq!(files.len(), 1);
    let fresh = get("A", &tr, out2.path(), &[]);
    assert_eq!(code(&fresh), 0);
    assert_eq!(std::fs::read(out2.path().join("A")).unwrap(), content);
    slow.wait_line("the interrupted-tracker download to finish", |l| {
        l.contains("\"event\":\"done\"")
    });
    assert!(slow.child.wait().unwrap().success());
    assert_eq!(std::fs::read(out1.path().join("A")).unwrap(), content);
}

#[test]
fn unwritable_output_fails_cleanly() {
    let (_t, tr) = tracker();
    let (d, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(d.path(), "A", &data(3 * CHUNK, 12));
    let (_p, _) = share(d.path(), &tr, &["A"], &[]);
    // --out names a path below a regular file: nothing can be created there.
    let blocker = scratch.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let out = get("A", &tr, &blocker.join("sub"), &[]);
    assert_eq!(code(&out), 1);
    assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
    assert_eq!(std::fs::read(&blocker).unwrap(), b"x");
}

#[test]
fn a_failing_disk_ends_the_download_cleanly() {
    let (_t, tr) = tracker();
    let (d, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(d.path(), "A", &data(3 * CHUNK, 13));
    let (_p, _) = share(d.path(), &tr, &["A"], &[]);
    // Every write to the download's .part file fails (/dev/full: "no space left on device").
    std::os::unix::fs::symlink("/dev/full", out.path().join("A.part")).unwrap();
    let result = get("A", &tr, out.path(), &[]);
    assert_eq!(
        code(&result),
        1,
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(String::from_utf8_lossy(&result.stderr).contains("cannot write A"));
    assert!(
        !out.path().join("A").exists(),
        "nothing under the final name"
    );
}
