//! The swarm key on the command line: where a tracker keeps its key (made on first start,
//! mode 0600), how every other command finds it (`--key`, `--key-file`, `DRIZZLE_KEY`,
//! the default key file), or `--open`; and the OS-drawn secret for ephemeral keys.

use crate::exit::{Exit, Fail};
use drizzle_core::secure::{Security, SwarmKey};
use rand::rngs::OsRng;
use rand::RngCore;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const KEY_ENV: &str = "DRIZZLE_KEY";
const NEEDS_KEY: &str = "pass --key KEY, --key-file FILE or DRIZZLE_KEY (the tracker prints \
                         its key as `swarm key KEY`), or --open for an open swarm";

/// How `share`, `get` and `list` join a swarm.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// The swarm key: 64 hex digits, as the tracker prints it (or set DRIZZLE_KEY).
    #[arg(long, value_parser = parse_key, conflicts_with_all = ["key_file", "open"])]
    pub key: Option<SwarmKey>,
    /// A file holding the swarm key, such as the tracker's key file.
    #[arg(long, conflicts_with = "open")]
    pub key_file: Option<PathBuf>,
    /// Join an open swarm: no key, nothing encrypted (the tracker must run --open too).
    #[arg(long)]
    pub open: bool,
}

impl KeyArgs {
    /// The security to run with: the key from the first of `--key`, `--key-file`,
    /// `DRIZZLE_KEY` and the default key file (a tracker's on this machine) — or `--open`.
    /// No key anywhere is "not authorised" (exit 5), said before anything starts.
    pub fn security(&self) -> Result<Security, Fail> {
        if self.open {
            return Ok(Security::Open);
        }
        let key = if let Some(key) = &self.key {
            key.clone()
        } else if let Some(file) = &self.key_file {
            read_key_file(file)?
        } else if let Ok(text) = std::env::var(KEY_ENV) {
            SwarmKey::from_hex(&text)
                .map_err(|e| Fail::new(Exit::Usage, format!("{KEY_ENV}: {e}")))?
        } else if let Some(file) = default_key_file().filter(|f| f.exists()) {
            log::info!("using the swarm key in {}", file.display());
            read_key_file(&file)?
        } else {
            return Err(Fail::new(
                Exit::NotAuthorised,
                format!("no swarm key: {NEEDS_KEY}"),
            ));
        };
        Ok(closed(key))
    }
}

/// How `tracker` runs its swarm: its key file (made on first start), or `--open`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrackerKeyArgs {
    /// Where the swarm key is kept; made with a new random key (mode 0600) if missing.
    /// Default: $XDG_CONFIG_HOME/drizzle/swarm.key (or ~/.config/drizzle/swarm.key).
    #[arg(long, conflicts_with = "open")]
    pub key_file: Option<PathBuf>,
    /// Run an open swarm: anyone may connect, nothing is encrypted.
    #[arg(long)]
    pub open: bool,
}

impl TrackerKeyArgs {
    /// The tracker's security, and its key (to print) when closed.
    pub fn security(&self) -> Result<(Security, Option<SwarmKey>), Fail> {
        if self.open {
            return Ok((Security::Open, None));
        }
        let file = match self.key_file.clone().or_else(default_key_file) {
            Some(file) => file,
            None => {
                let why = "no home directory for the default key file: pass --key-file FILE";
                return Err(Fail::new(Exit::Usage, why));
            }
        };
        let key = load_or_make(&file)?;
        Ok((closed(key.clone()), Some(key)))
    }
}

fn parse_key(text: &str) -> Result<SwarmKey, String> {
    SwarmKey::from_hex(text).map_err(|e| e.to_string())
}

/// A closed swarm with `key`, ephemeral keys seeded from the OS (never logged).
pub fn closed(key: SwarmKey) -> Security {
    let mut secret_seed = [0u8; 32];
    OsRng.fill_bytes(&mut secret_seed);
    Security::Closed { key, secret_seed }
}

/// A fresh random key (for the demo and the benches, which run their own swarms).
pub fn random_key() -> SwarmKey {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    SwarmKey::from_bytes(key)
}

fn default_key_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("drizzle").join("swarm.key"))
}

fn read_key_file(file: &Path) -> Result<SwarmKey, Fail> {
    let text = fs::read_to_string(file).map_err(|e| {
        Fail::new(
            Exit::Usage,
            format!("cannot read the key file {}: {e}", file.display()),
        )
    })?;
    SwarmKey::from_hex(&text)
        .map_err(|e| Fail::new(Exit::Usage, format!("{}: {e}", file.display())))
}

/// The tracker's key: read from `file`, or made and written there (0600) if it is missing.
fn load_or_make(file: &Path) -> Result<SwarmKey, Fail> {
    let cannot = |e: std::io::Error| {
        Fail::new(
            Exit::Failure,
            format!("cannot keep the swarm key in {}: {e}", file.display()),
        )
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(cannot)?;
    }
    let key = random_key();
    let made = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file);
    match made {
        Ok(mut f) => {
            f.write_all(format!("{}\n", key.to_hex()).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(cannot)?;
            log::info!("made a new swarm key in {}", file.display());
            Ok(key)
        }
        // Kept from an earlier start (or made by a tracker starting beside us).
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let mode = fs::metadata(file).map_err(cannot)?.permissions().mode();
            if mode & 0o077 != 0 {
                log::warn!(
                    "{} can be read by others (mode {:o}): chmod 600 it",
                    file.display(),
                    mode & 0o777
                );
            }
            read_key_file(file)
        }
        Err(e) => Err(cannot(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_makes_its_key_once_private_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/swarm.key");
        let first = load_or_make(&file).unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_make(&file).unwrap(), first, "reused on restart");
        fs::write(&file, "not a key").unwrap();
        assert!(
            load_or_make(&file).is_err(),
            "a damaged key file is not replaced"
        );
    }

    #[test]
    fn clients_need_a_key_or_open() {
        let none = KeyArgs::default();
        // The environment may hold a key or a default file; only check what does not
        // depend on it.
        let open = KeyArgs {
            open: true,
            ..KeyArgs::default()
        };
        assert_eq!(open.security().unwrap(), Security::Open);
        let given = KeyArgs {
            key: Some(SwarmKey::from_bytes([3; 32])),
            ..none
        };
        assert!(given.security().unwrap().is_closed());
    }
}
