//! Invariants checked while a world runs: nothing unverified is ever written, committed
//! files equal what was first shared, limits hold, and the tracker records only chunks
//! their peers really hold. Each returns violations as sentences, never panics.

use crate::world::{NodeId, NodeMachine, World};
use drizzle_core::limits::MAX_CHUNKS_STORING;
use drizzle_core::{Bytes, FileName};

/// Every check that can run after any step.
pub fn check(world: &World) -> Vec<String> {
    let mut found = check_limits(world);
    found.extend(check_registrations(world));
    found
}

/// A write must carry exactly the bytes of a chunk of the file first shared under `name`.
/// Whether it does.
pub fn check_store(
    world: &mut World,
    node: NodeId,
    name: &FileName,
    offset: u64,
    data: &Bytes,
) -> bool {
    let verdict = match world.truth.get(name) {
        None => Some(format!("stored bytes of {name}, which nobody shared")),
        Some(truth) => {
            let manifest = &truth.manifest;
            let chunk = offset / u64::from(manifest.chunk_size.max(1));
            let digest = world.digest(data);
            let ok = u32::try_from(chunk)
                .ok()
                .filter(|c| manifest.chunk_range(*c).map(|(o, _)| o) == Some(offset))
                .is_some_and(|c| manifest.chunk_matches(c, data.len(), &digest));
            (!ok).then(|| format!("stored unverified bytes at offset {offset} of {name}"))
        }
    };
    let ok = verdict.is_none();
    if let Some(v) = verdict {
        let who = world.node_name(node).to_string();
        world.violations.push(format!("{who}: {v}"));
    }
    ok
}

/// A committed file must be byte-identical to what was first shared under its name.
pub fn check_commit(world: &mut World, node: NodeId, name: &FileName) {
    let stored = world.storage(node).and_then(|s| s.files.get(name));
    let expected = world.truth.get(name);
    let same = match (stored, expected) {
        (Some(a), Some(b)) => a.same_as(b),
        _ => false,
    };
    if !same {
        let who = world.node_name(node).to_string();
        world.violations.push(format!(
            "{who}: committed {name}, which differs from the shared file"
        ));
    }
}

fn check_limits(world: &World) -> Vec<String> {
    let mut found = Vec::new();
    for (id, node) in world.nodes.iter().enumerate() {
        let Some(NodeMachine::Peer(peer)) = &node.machine else {
            continue;
        };
        // The policy's deep settings are the most it ever keeps outstanding.
        let policy = peer.config().fetch;
        let per_holder = policy.requests_per_holder;
        for (holder, n) in peer.requests_per_holder() {
            if n > per_holder {
                found.push(format!(
                    "{}: {n} requests outstanding to {holder} (limit {per_holder})",
                    world.node_name(id)
                ));
            }
        }
        // Back-pressure: past this, a peer takes no more from holders until its disk and
        // hasher catch up.
        let storing = peer.chunks_storing();
        if storing > MAX_CHUNKS_STORING {
            found.push(format!(
                "{}: {storing} chunks received and not stored (limit {MAX_CHUNKS_STORING})",
                world.node_name(id)
            ));
        }
        let per_download = policy.requests_per_download;
        for n in peer.requests_per_download() {
            if n > per_download {
                found.push(format!(
                    "{}: {n} requests in flight for one download (limit {per_download})",
                    world.node_name(id)
                ));
            }
        }
    }
    found
}

/// The tracker may lag behind a peer, never run ahead of it: every chunk it records for a
/// live peer's file is one that peer holds or announced as it began to arrive (and still
/// fetches).
fn check_registrations(world: &World) -> Vec<String> {
    let Some(tracker) = world.tracker() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for holding in tracker.holdings() {
        let live = world
            .nodes
            .iter()
            .enumerate()
            .find_map(|(id, n)| match &n.machine {
                Some(NodeMachine::Peer(p)) if p.peer_id() == holding.peer_id => Some((id, p)),
                _ => None,
            });
        let Some((id, peer)) = live else { continue };
        // A peer that dropped the file entirely has told the tracker so; the news may still
        // be on its way.
        let Some(announced) = peer.announced(&holding.root) else {
            continue;
        };
        if !holding.have.is_subset(&announced) {
            found.push(format!(
                "tracker records chunks of {} for {} that it neither holds nor announced",
                holding.root.short(),
                world.node_name(id)
            ));
        }
    }
    found
}
