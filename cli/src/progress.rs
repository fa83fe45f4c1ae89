//! How `get` shows what happens: NDJSON events with `--json`, progress bars on a terminal
//! (the file's bar and one line per source peer), plain periodic lines otherwise.

use crate::out::say;
use drizzle_core::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug)]
pub enum Display {
    Json,
    Bars {
        multi: MultiProgress,
        file: ProgressBar,
        peers: BTreeMap<SocketAddr, ProgressBar>,
    },
    Plain {
        last_percent: u64,
    },
}

/// Per-peer tallies, shown by the bars and the plain lines.
#[derive(Debug, Default)]
pub struct Tally {
    pub from: BTreeMap<SocketAddr, u32>,
}

impl Display {
    pub fn new(json: bool) -> Display {
        if json {
            Display::Json
        } else if std::io::stdout().is_terminal() {
            let multi = MultiProgress::new();
            let file = multi.add(ProgressBar::new(0));
            file.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:40}] {pos}/{len} chunks {percent}% {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            Display::Bars {
                multi,
                file,
                peers: BTreeMap::new(),
            }
        } else {
            Display::Plain { last_percent: 0 }
        }
    }

    pub fn show(&mut self, event: &Event, tally: &mut Tally, path: &Path, secs: f64) {
        if let Event::Verified { peer, .. } = event {
            *tally.from.entry(*peer).or_default() += 1;
        }
        match self {
            Display::Json => {
                if let Some(line) = json_line(event, path, secs) {
                    say!("{line}");
                }
            }
            Display::Bars { multi, file, peers } => match event {
                Event::Located { name, chunks, .. } => {
                    file.set_length(u64::from(*chunks));
                    file.set_message(name.to_string());
                }
                Event::Verified {
                    peer, have, want, ..
                } => {
                    file.set_length(u64::from(*want));
                    file.set_position(u64::from(*have));
                    let bar = peers.entry(*peer).or_insert_with(|| {
                        let b = multi.add(ProgressBar::new_spinner());
                        b.set_style(
                            ProgressStyle::with_template("  {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        b
                    });
                    let n = tally.from.get(peer).copied().unwrap_or(0);
                    bar.set_message(format!("from {peer}: {n} chunk(s)"));
                }
                Event::Checked { good, .. } => {
                    file.set_position(u64::from(*good));
                    let _ = multi.println(describe(event));
                }
                Event::Mismatch { .. }
                | Event::HolderLost { .. }
                | Event::Checking { .. }
                | Event::Waiting { .. } => {
                    let _ = multi.println(describe(event));
                }
                Event::Done { .. } | Event::AlreadyComplete { .. } => {
                    file.finish();
                    for b in peers.values() {
                        b.finish();
                    }
                    say!("{}", final_line(event, path, secs));
                }
                // The command says why it failed, once, as it exits.
                Event::Rejected { .. } | Event::Failed { .. } => {
                    file.abandon();
                    for b in peers.values() {
                        b.abandon();
                    }
                }
                _ => {}
            },
            Display::Plain { last_percent } => match event {
                Event::Located {
                    name,
                    chunks,
                    holders,
                    ..
                } => {
                    // One line per holder, not per chunk: files can have many thousands.
                    say!(
                        "located {name}: {chunks} chunk(s), {} holder(s)",
                        holders.len()
                    );
                    for h in holders {
                        say!("  {} holds {} chunk(s)", h.addr, h.have.count());
                    }
                }
                Event::Mismatch { .. }
                | Event::HolderLost { .. }
                | Event::Checking { .. }
                | Event::Checked { .. }
                | Event::Waiting { .. } => say!("{}", describe(event)),
                Event::Verified {
                    name, have, want, ..
                } => {
                    let percent = u64::from(*have) * 100 / u64::from((*want).max(1));
                    if percent >= *last_percent + 10 || have == want {
                        *last_percent = percent;
                        let filled = (percent / 10) as usize;
                        let from: Vec<String> = tally
                            .from
                            .iter()
                            .map(|(p, n)| format!("{p}: {n}"))
                            .collect();
                        say!(
                            "[{}{}] {percent:>3}% {name} ({have}/{want} chunks; from {})",
                            "=".repeat(filled),
                            " ".repeat(10 - filled.min(10)),
                            from.join(", ")
                        );
                    }
                }
                Event::Done { .. } | Event::AlreadyComplete { .. } => {
                    say!("{}", final_line(event, path, secs))
                }
                _ => {}
            },
        }
    }
}

fn describe(event: &Event) -> String {
    event.to_string()
}

fn final_line(event: &Event, path: &Path, secs: f64) -> String {
    match event {
        Event::Done {
            bytes,
            complete,
            fetched,
            ..
        } => {
            // The rate is of what this run fetched, not of what an earlier run left.
            let rate = *fetched as f64 / secs.max(1e-6) / 1e6;
            let earlier = match bytes - fetched {
                0 => String::new(),
                n => format!("; {n} bytes were already here"),
            };
            let what = if *complete { "done" } else { "partial" };
            format!(
                "{what}: {} ({bytes} bytes; fetched {fetched} in {secs:.2} s, {rate:.1} MB/s{earlier})",
                path.display()
            )
        }
        Event::AlreadyComplete { bytes, .. } => format!(
            "already complete: {} ({bytes} bytes, the tracker's content); nothing fetched",
            path.display()
        ),
        _ => describe(event),
    }
}

/// The contract's NDJSON line for an event (`None` for events it does not show).
pub fn json_line(event: &Event, path: &Path, secs: f64) -> Option<serde_json::Value> {
    Some(match event {
        Event::Located {
            name,
            root,
            chunks,
            holders,
        } => {
            let counts: serde_json::Map<String, serde_json::Value> = holders
                .iter()
                .map(|h| (h.addr.to_string(), h.have.count().into()))
                .collect();
            json!({"event": "located", "name": name, "root": root, "chunks": chunks, "holders": counts})
        }
        Event::Requested { chunk, peer, .. } => {
            json!({"event": "request", "chunk": chunk, "peer": peer})
        }
        Event::Verified {
            chunk,
            peer,
            have,
            want,
            ..
        } => {
            json!({"event": "verified", "chunk": chunk, "peer": peer, "have": have, "want": want})
        }
        Event::Mismatch { chunk, peer, .. } => {
            json!({"event": "mismatch", "chunk": chunk, "peer": peer})
        }
        Event::HolderLost { peer, reason, .. } => {
            json!({"event": "holder_lost", "peer": peer, "reason": reason})
        }
        Event::Done {
            name,
            bytes,
            complete,
            root,
            fetched,
        } => json!({
            "event": "done", "name": name, "path": path.display().to_string(), "bytes": bytes,
            "secs": secs, "complete": complete, "root": root, "fetched": fetched
        }),
        Event::AlreadyComplete { name, root, bytes } => json!({
            "event": "done", "name": name, "path": path.display().to_string(), "bytes": bytes,
            "secs": secs, "complete": true, "root": root, "fetched": 0, "already_complete": true
        }),
        Event::Checking { chunks, .. } => json!({"event": "checking", "chunks": chunks}),
        Event::Checked { good, bad, .. } => json!({"event": "checked", "good": good, "bad": bad}),
        Event::Waiting { secs, on, .. } => {
            json!({"event": "waiting", "secs_without_progress": secs, "on": on})
        }
        Event::Rejected {
            reason,
            chunks,
            name,
        } => {
            json!({"event": "rejected", "name": name, "reason": reason, "chunks": chunks})
        }
        _ => return None,
    })
}
