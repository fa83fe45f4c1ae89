//! Off the happy path, through the binary as a user (or an adversary) would drive it: a
//! damaged `.part` between runs, a file already under the name, two `get`s at once, holders
//! that cannot serve, servers that are not trackers, a closed stdout, long names, bad flags.

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
use std::net::TcpListener;
use std::os::unix::fs::FileExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `drizzle share DIR` with both output streams piped, for a test that reads them itself.
fn spawn_sharer(dir: &std::path::Path, tracker: &str) -> Child {
    drizzle()
        .args(["share", dir.to_str().unwrap(), "--tracker", tracker])
        .args(["--listen", "127.0.0.1:0", "--chunk-size", "64KiB"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Ends a process from `spawn_sharer`; what it said on stderr.
fn stop(mut child: Child) -> String {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// The last `--json` event, which for a failure is `failed` with the exit code.
fn last_event(out: &std::process::Output) -> serde_json::Value {
    events(out).pop().unwrap_or_default()
}

#[test]
fn a_damaged_part_is_checked_on_resume_and_the_damage_fetched_again() {
    let (_t, tr) = tracker();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let content = data(20 * CHUNK, 3);
    write(d1.path(), "f", &content);
    let (_p, _) = share(d1.path(), &tr, &["f"], &[]);
    let out = get("f", &tr, d2.path(), &["--chunks", "0-9"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = last_event(&out);
    assert_eq!(done["event"], "done");
    assert_eq!(done["complete"], false);
    let part = d2.path().join("f.part");
    assert_eq!(
        done["path"],
        part.to_str().unwrap(),
        "a partial done names the .part"
    );
    // Damage one byte of recorded chunk 3 (and none of the record).
    let file = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
    file.write_all_at(b"\xff", (3 * CHUNK + 17) as u64).unwrap();
    drop(file);

    let out = get("f", &tr, d2.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let evs = events(&out);
    let checking = of_kind(&evs, "checking");
    assert_eq!(checking.len(), 1, "{evs:?}");
    assert_eq!(checking[0]["chunks"], 10);
    let checked = of_kind(&evs, "checked");
    assert_eq!(checked[0]["bad"], serde_json::json!([3]), "{evs:?}");
    let requested: Vec<u64> = of_kind(&evs, "request")
        .iter()
        .map(|e| e["chunk"].as_u64().unwrap())
        .collect();
    assert!(requested.contains(&3), "the damaged chunk is fetched again");
    assert!(
        !requested.contains(&4),
        "good chunks are not: {requested:?}"
    );
    let done = last_event(&out);
    assert_eq!(
        done["fetched"],
        11 * CHUNK,
        "the rate counts this run's bytes"
    );
    assert_same_file(d1.path(), d2.path(), "f");
}

#[test]
fn a_file_already_there_is_never_replaced_without_force() {
    let (_t, tr) = tracker();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let content = data(5 * CHUNK + 100, 4);
    write(d1.path(), "f", &content);
    let (_p, _) = share(d1.path(), &tr, &["f"], &[]);

    // The same content: nothing fetched, exit 0.
    write(d2.path(), "f", &content);
    let out = get("f", &tr, d2.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(of_kind(&events(&out), "request").is_empty());
    assert_eq!(last_event(&out)["already_complete"], true);

    // Other content of the same size, then of another size: exit 1, naming --force.
    let mut other = content.clone();
    other[4 * CHUNK] ^= 1;
    for mine in [other, b"my own notes".to_vec()] {
        write(d2.path(), "f", &mine);
        let out = get("f", &tr, d2.path(), &[]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
        assert_eq!(last_event(&out)["event"], "failed");
        assert_eq!(last_event(&out)["code"], 1);
        assert_eq!(std::fs::read(d2.path().join("f")).unwrap(), mine);
        assert!(!d2.path().join("f.part").exists());
    }

    let out = get("f", &tr, d2.path(), &["--force"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_same_file(d1.path(), d2.path(), "f");
}

#[test]
fn a_second_get_into_the_same_place_is_refused_and_the_first_finishes_intact() {
    let (_t, tr) = tracker();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(d1.path(), "slow", &data(32 * CHUNK, 5));
    // 1 MB/s: about two seconds.
    let (_p, _) = share(d1.path(), &tr, &["slow"], &["--upload-limit", "1MB/s"]);
    let mut first = start_get("slow", &tr, d2.path());
    first.wait_line("a verified chunk", |l| l.contains("\"event\":\"verified\""));
    let second = get("slow", &tr, d2.path(), &[]);
    assert_eq!(code(&second), 1, "{}", stderr(&second));
    assert!(stderr(&second).contains("another drizzle get"));
    first.wait_line("done", |l| l.contains("\"event\":\"done\""));
    assert!(first.child.wait().unwrap().success());
    assert_same_file(d1.path(), d2.path(), "slow");
    assert!(!d2.path().join("slow.part.lock").exists());
}

/// The same bytes shared in other chunks (another `--chunk-size`, an older build's default)
/// are hashed again in the chunks the tracker holds the name in, and join that swarm; other
/// bytes of the same size are hashed again once and stay refused.
#[test]
fn a_file_shared_in_other_chunks_joins_the_swarm_its_name_is_held_for() {
    let (_t, tr) = tracker();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let bytes = data(10 * CHUNK, 4);
    write(dirs[0].path(), "f", &bytes);
    write(dirs[1].path(), "f", &bytes);
    write(dirs[2].path(), "f", &data(10 * CHUNK, 9));
    let (first, _) = share(dirs[0].path(), &tr, &["f"], &[]);
    let again = "hashing f again in chunks of 65536 bytes, as the tracker holds it";
    // In its default chunks, 256 KiB for 640 KiB.
    let start = |dir: &tempfile::TempDir| {
        let dir = dir.path().to_str().unwrap();
        Proc::start(&["share", dir, "--tracker", &tr, "--listen", "127.0.0.1:0"])
    };
    let mut same = start(&dirs[1]);
    same.wait_line("refused", |l| {
        l.starts_with("refused f: ") && l.contains("chunks of 65536")
    });
    same.wait_line("hashed again", |l| l == again);
    same.wait_line("shared", |l| l == "shared f");
    let mut other = start(&dirs[2]);
    other.wait_line("hashed again", |l| l == again);
    other.wait_line("refused again", |l| l.starts_with("refused f: "));
    // Only the one that joined can serve it now.
    drop(first);
    let out = get("f", &tr, dirs[3].path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_same_file(dirs[0].path(), dirs[3].path(), "f");
}

#[test]
fn a_holder_that_cannot_serve_ends_the_download_with_exit_4_naming_it() {
    let (_t, tr) = tracker();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(d1.path(), "gone", &data(8 * CHUNK, 6));
    let (_p, holder) = share(d1.path(), &tr, &["gone"], &[]);
    std::fs::remove_file(d1.path().join("gone")).unwrap();
    let started = Instant::now();
    let out = get("gone", &tr, d2.path(), &["--stall-timeout", "2"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    let failed = last_event(&out);
    assert_eq!(failed["event"], "failed");
    assert_eq!(failed["code"], 4);
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains(&holder), "{reason}");
    assert_eq!(
        stderr(&out).matches(reason).count(),
        1,
        "one message: {}",
        stderr(&out)
    );
    assert!(!d2.path().join("gone").exists());
}

/// A server at `addr` that greets every connection with `greeting` (or says nothing) and
/// keeps it open.
fn fake_server(greeting: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for mut stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.write_all(greeting);
            open.push(stream);
        }
    });
    addr
}

#[test]
fn a_server_that_is_not_a_tracker_is_named_within_seconds_and_once() {
    let banner = fake_server(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
    let http = fake_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let silent = fake_server(b"");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>| {
        std::thread::spawn(move || {
            let started = Instant::now();
            // At the default log level, as a user runs it.
            let out = drizzle()
                .args(&args)
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            (args, out, started.elapsed())
        })
    };
    let mut runs = Vec::new();
    for addr in [&banner, &http, &silent] {
        runs.push(run(vec!["list".into(), "--tracker".into(), addr.clone()]));
    }
    let out_dir = dir.path().to_str().unwrap().to_string();
    runs.push(run(vec![
        "get".into(),
        "x".into(),
        "--tracker".into(),
        banner.clone(),
        "--out".into(),
        out_dir.clone(),
    ]));
    // Its own directory: the `get` beside it leaves a lock in `out_dir` for a while.
    let shared = tempfile::tempdir().unwrap();
    runs.push(run(vec![
        "share".into(),
        shared.path().to_str().unwrap().to_string(),
        "--tracker".into(),
        http.clone(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]));
    for handle in runs {
        let (args, out, took) = handle.join().unwrap();
        assert_eq!(code(&out), 4, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a Drizzle tracker")
                || stderr(&out).contains("did not answer as a Drizzle tracker"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(took < Duration::from_secs(17), "{args:?} took {took:?}");
        // The cause is named once: in the error line, with no warning repeating it.
        let err = stderr(&out);
        let named = err
            .lines()
            .filter(|l| l.contains("Drizzle tracker"))
            .count();
        assert_eq!(named, 1, "{args:?}: {err}");
        assert!(!err.contains("WARN"), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_stdout_does_not_kill_a_sharer_or_a_list() {
    let (_t, tr) = tracker();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for i in 0..3 {
        write(d1.path(), &format!("f{i}"), &data(CHUNK, i));
    }
    let mut sharer = spawn_sharer(d1.path(), &tr);
    // Read the first line as `| head -1` would, then close the pipe.
    let mut stdout = sharer.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&first).starts_with("listening on"));
    drop(stdout);
    // It keeps serving: the files can be fetched from it.
    for i in 0..3 {
        let name = format!("f{i}");
        let deadline = Instant::now() + WAIT;
        while code(&get(&name, &tr, d2.path(), &[])) != 0 {
            assert!(Instant::now() < deadline, "{name} never came");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(sharer.try_wait().unwrap().is_none(), "the sharer died");
    let err = stop(sharer);
    assert!(!err.contains("panicked"), "{err}");

    // A one-shot command whose reader is gone ends without a panic.
    let mut list = drizzle()
        .args(["list", "--tracker", &tr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(list.stdout.take());
    let out = list.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn any_name_share_accepts_can_be_fetched() {
    let (_t, tr) = tracker();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let longest = "n".repeat(243);
    let too_long = "m".repeat(250);
    write(d1.path(), &longest, b"fits");
    write(d1.path(), &too_long, b"does not");
    let mut sharer = spawn_sharer(d1.path(), &tr);
    let mut lines = String::new();
    let mut stdout = sharer.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    while !lines.contains("shared ") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "{lines}");
        lines.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(lines.contains("sharing 1 file(s)"), "{lines}");
    let out = get(&longest, &tr, d2.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_same_file(d1.path(), d2.path(), &longest);
    let err = stop(sharer);
    assert!(
        err.contains("not sharing") && err.contains(&too_long),
        "{err}"
    );
}

#[test]
fn bad_flags_are_usage_errors_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["share", d, "--tracker", "127.0.0.1:1", "--chunk-size", "0"],
        vec![
            "share",
            d,
            "--tracker",
            "127.0.0.1:1",
            "--upload-limit",
            "0",
        ],
        vec![
            "get",
            "x",
            "--tracker",
            "127.0.0.1:1",
            "--stall-timeout",
            "0",
        ],
        vec!["list", "--tracker", "no-such-host.invalid:1"],
    ];
    for args in cases {
        let out = drizzle().args(&args).output().unwrap();
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    }
}

#[test]
fn host_names_resolve_and_peers_register_where_they_listen() {
    let (_t, tr) = tracker();
    let port = tr.rsplit(':').next().unwrap();
    let by_name = format!("localhost:{port}");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(d1.path(), "f", &data(3 * CHUNK, 7));
    // Bound to 127.0.0.2, its tracker session must come from there too.
    let (_p, holder) = share_at("127.0.0.2:0", d1.path(), &by_name, &["f"], &[]);
    assert!(holder.starts_with("127.0.0.2:"), "{holder}");
    let out = get("f", &by_name, d2.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let located = of_kind(&events(&out), "located")[0].clone();
    assert!(located["holders"].get(&holder).is_some(), "{located}");
    assert_same_file(d1.path(), d2.path(), "f");
}

/// A holder registered where nobody can reach it (advertising a port it does not listen
/// on) is reported by each getter that fails to connect; once three hosts have reported
/// it, a fourth is not handed it at all, and every download completes from the holder left.
#[test]
fn a_holder_nobody_can_reach_is_reported_and_no_longer_handed_out() {
    let (_t, tr) = tracker();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "f", &data(16 * CHUNK, 8));
    let (_good, good) = share(src.path(), &tr, &["f"], &[]);
    let dead_port = TcpListener::bind("127.0.0.5:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let advertise = format!("127.0.0.5:{dead_port}");
    let extra = ["--advertise", advertise.as_str()];
    let (_dead, _) = share_at("127.0.0.5:0", src.path(), &tr, &["f"], &extra);
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = get_at(&format!("{ip}:0"), "f", &tr, out_dir.path(), &[]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let events = events(&out);
        let located = of_kind(&events, "located")[0].clone();
        assert!(located["holders"].get(&advertise).is_some(), "{located}");
        assert_same_file(src.path(), out_dir.path(), "f");
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = get_at("127.0.0.6:0", "f", &tr, out_dir.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = events(&out);
    let located = of_kind(&events, "located")[0].clone();
    assert!(located["holders"].get(&advertise).is_none(), "{located}");
    assert!(located["holders"].get(&good).is_some(), "{located}");
    assert!(of_kind(&events, "request")
        .iter()
        .all(|r| r["peer"] == good.as_str()));
    assert_same_file(src.path(), out_dir.path(), "f");
}
