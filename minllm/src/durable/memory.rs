//! The in-memory backend, for tests and for runs that only need to pause.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Checkpoint, CheckpointError, CheckpointInfo, Checkpointer, Field, RunLock};

#[derive(Default)]
struct Runs {
    checkpoints: HashMap<String, BTreeMap<u64, Checkpoint>>,
    execs: HashMap<(String, u64, String), Vec<u8>>,
    held: HashSet<String>,
}

/// Checkpoints kept in memory: they end with the process. Cloning gives a
/// handle to the same checkpoints.
#[derive(Clone, Default)]
pub struct MemoryCheckpointer {
    runs: Arc<Mutex<Runs>>,
}

impl MemoryCheckpointer {
    /// An empty one.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MemoryCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCheckpointer").field("runs", &self.runs.lock().checkpoints.len()).finish()
    }
}

/// Releases a run of a [`MemoryCheckpointer`].
struct Held {
    runs: Arc<Mutex<Runs>>,
    run: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.runs.lock().held.remove(&self.run);
    }
}

impl Checkpointer for MemoryCheckpointer {
    fn lock(&self, run: &str) -> Result<RunLock, CheckpointError> {
        if !self.runs.lock().held.insert(run.to_owned()) {
            return Err(CheckpointError::Busy { run: run.to_owned() });
        }
        Ok(RunLock::new(Held { runs: Arc::clone(&self.runs), run: run.to_owned() }))
    }

    fn put(&self, run: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let mut runs = self.runs.lock();
        let list = runs.checkpoints.entry(run.to_owned()).or_default();
        if list.contains_key(&checkpoint.seq) {
            return Err(CheckpointError::Conflict { run: run.to_owned(), seq: checkpoint.seq });
        }
        let parent = checkpoint.parent.and_then(|p| list.get(&p));
        let mut stored = checkpoint.clone();
        for (name, field) in &mut stored.fields {
            if *field == Field::Unchanged {
                let before = parent.and_then(|p| p.fields.iter().find(|(n, _)| n == name)).map(|(_, f)| f.clone());
                *field = before.ok_or_else(|| {
                    CheckpointError::Backend(format!("field `{name}` is unchanged from a parent that does not have it"))
                })?;
            }
        }
        list.insert(stored.seq, stored);
        Ok(())
    }

    fn put_exec(&self, run: &str, visit: u64, key: &str, value: &[u8]) -> Result<(), CheckpointError> {
        self.runs.lock().execs.insert((run.to_owned(), visit, key.to_owned()), value.to_vec());
        Ok(())
    }

    fn get_exec(&self, run: &str, visit: u64, key: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
        Ok(self.runs.lock().execs.get(&(run.to_owned(), visit, key.to_owned())).cloned())
    }

    fn get(&self, run: &str, seq: u64) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self.runs.lock().checkpoints.get(run).and_then(|l| l.get(&seq)).cloned())
    }

    fn latest(&self, run: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self.runs.lock().checkpoints.get(run).and_then(|l| l.values().next_back()).cloned())
    }

    fn history(&self, run: &str) -> Result<Vec<CheckpointInfo>, CheckpointError> {
        let runs = self.runs.lock();
        Ok(runs.checkpoints.get(run).map(|l| l.values().map(CheckpointInfo::from).collect()).unwrap_or_default())
    }
}
