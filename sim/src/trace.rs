//! Turning core events into the run's trace: one line per event, with virtual time, the
//! node, and words a newcomer can follow; or one JSON object per line for machines.

use drizzle_core::Event;
use serde::Serialize;

/// One line of a run's trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceLine {
    pub t_ms: u64,
    pub node: String,
    pub text: String,
    #[serde(skip)]
    pub event: Option<Event>,
}

impl TraceLine {
    pub fn human(&self) -> String {
        format!(
            "{:>5}.{:03}s  {:<8} {}",
            self.t_ms / 1000,
            self.t_ms % 1000,
            self.node,
            self.text
        )
    }

    /// `{"t_ms":..,"node":..,"event":..,...}`; lines without a core event carry `"event":"note"`.
    pub fn json(&self) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("t_ms".into(), self.t_ms.into());
        obj.insert("node".into(), self.node.clone().into());
        match self.event.as_ref().map(serde_json::to_value) {
            Some(Ok(serde_json::Value::Object(fields))) => obj.extend(fields),
            _ => {
                obj.insert("event".into(), "note".into());
                obj.insert("text".into(), self.text.clone().into());
            }
        }
        serde_json::Value::Object(obj).to_string()
    }
}
