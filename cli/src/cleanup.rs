//! What an interrupted bench or demo leaves behind. A bench starts processes (tracker,
//! sharers, getters, HTTP servers), writes scratch files of gigabytes and may build network
//! namespaces; on SIGINT or SIGTERM the processes still running are killed, the scratch
//! directories removed and the teardown commands run before it exits, where before a 1 GiB
//! transfer bench stopped with Ctrl-C left 1.5 GB in /tmp and its HTTP servers running.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};

/// The bench's processes, scratch directories and teardown commands, while they matter.
struct Left {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
    /// Commands (program, then arguments), each with the id of the guard that set it.
    teardown: Vec<(u64, Vec<String>)>,
    next_id: u64,
}

static LEFT: Mutex<Left> = Mutex::new(Left {
    pids: Vec::new(),
    dirs: Vec::new(),
    teardown: Vec::new(),
    next_id: 0,
});

static WATCH: Once = Once::new();

/// From now on, SIGINT and SIGTERM kill what is tracked, remove what is tracked and exit
/// (status 1, as an interrupted `get` does). Once per process; later calls do nothing.
pub fn on_interrupt() {
    WATCH.call_once(|| {
        let mut signals = match Signals::new([SIGINT, SIGTERM]) {
            Ok(s) => s,
            Err(e) => return log::warn!("cannot handle interruptions: {e}"),
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Held to the exit: the bench starts nothing more meanwhile (see `spawn`).
                let left = LEFT.lock();
                if let Ok(left) = &left {
                    clean_up(left);
                }
                crate::out::warn_user!("drizzle: interrupted (signal {signal}); cleaned up");
                std::process::exit(1);
            }
        });
    });
}

/// Starts `command`, to be killed if the bench is interrupted until `forget_process`. It
/// starts under the same lock the interruption takes, so no process can start unseen
/// while the others are killed.
pub fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut left = LEFT
        .lock()
        .map_err(|_| io::Error::other("bench state poisoned"))?;
    let child = command.spawn()?;
    left.pids.push(child.id());
    Ok(child)
}

fn clean_up(left: &Left) {
    for pid in &left.pids {
        // std kills only a `Child` it owns; these belong to the threads interrupted.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    for dir in &left.dirs {
        // The processes killed may still be writing there for a moment.
        for _ in 0..5 {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => break,
            }
        }
    }
    run_quietly(left.teardown.iter().map(|(_, command)| command));
}

/// Runs each command (a program and its arguments) in turn, whatever becomes of the
/// others: teardown, where a piece already gone is no failure.
pub fn run_quietly<'c>(commands: impl IntoIterator<Item = &'c Vec<String>>) {
    for command in commands {
        if let Some((program, args)) = command.split_first() {
            let _ = Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A process started with `spawn` has been waited for: its id may now be another's.
pub fn forget_process(pid: u32) {
    if let Ok(mut left) = LEFT.lock() {
        left.pids.retain(|p| *p != pid);
    }
}

/// Directory `dir` is to be removed if the bench is interrupted, while the guard returned
/// lives (the bench removes it itself otherwise, as a `TempDir` does when dropped).
pub fn track_dir(dir: &Path) -> TrackedDir {
    if let Ok(mut left) = LEFT.lock() {
        left.dirs.push(dir.to_path_buf());
    }
    TrackedDir(dir.to_path_buf())
}

pub struct TrackedDir(PathBuf);

impl Drop for TrackedDir {
    fn drop(&mut self) {
        if let Ok(mut left) = LEFT.lock() {
            left.dirs.retain(|d| *d != self.0);
        }
    }
}

/// `commands` (each a program and its arguments) are to be run, in order, if the bench is
/// interrupted, while the guard returned lives (whoever holds it runs them otherwise).
pub fn track_teardown(commands: Vec<Vec<String>>) -> TrackedTeardown {
    let Ok(mut left) = LEFT.lock() else {
        return TrackedTeardown(None);
    };
    let id = left.next_id;
    left.next_id += 1;
    left.teardown.extend(commands.into_iter().map(|c| (id, c)));
    TrackedTeardown(Some(id))
}

pub struct TrackedTeardown(Option<u64>);

impl Drop for TrackedTeardown {
    fn drop(&mut self) {
        if let (Some(id), Ok(mut left)) = (self.0, LEFT.lock()) {
            left.teardown.retain(|(of, _)| *of != id);
        }
    }
}
