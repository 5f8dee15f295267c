//! What the checkpoint tests share: a scratch directory, the backends under
//! test, and the label of a finished run.
#![allow(dead_code)] // each test file uses a part

use minllm::durable::{Checkpointer, MemoryCheckpointer, Outcome, SqliteCheckpointer};

pub fn finished(outcome: Outcome) -> String {
    match outcome {
        Outcome::Finished(label) => label.to_string(),
        Outcome::Paused(p) => panic!("paused at {}", p.node()),
    }
}

pub fn backends() -> Vec<(Box<dyn Checkpointer>, tempdir::Dir)> {
    let dir = tempdir::Dir::new();
    let sqlite = SqliteCheckpointer::open(dir.path().join("runs.db")).unwrap();
    vec![(Box::new(MemoryCheckpointer::new()), tempdir::Dir::new()), (Box::new(sqlite), dir)]
}

/// A temporary directory, removed when dropped.
pub mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let path = std::env::temp_dir().join(format!("minllm-durable-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
