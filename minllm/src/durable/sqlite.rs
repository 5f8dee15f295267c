//! The SQLite backend: one file, WAL mode, no server.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Checkpoint, CheckpointError, CheckpointInfo, Checkpointer, Field, RunLock, Status};

/// Store fields of at most this many bytes live in their checkpoint's row
/// (as hex); larger ones in a blob of their own, which later checkpoints
/// share while the field does not change.
const INLINE: usize = 512;

/// What the file says it is, so that a foreign database is refused.
const FORMAT: &str = "minllm checkpoints";
const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    run TEXT NOT NULL, seq INTEGER NOT NULL, parent INTEGER, visit INTEGER NOT NULL,
    path TEXT NOT NULL, steps TEXT NOT NULL, status TEXT NOT NULL, detail BLOB,
    answers TEXT NOT NULL, created_ms INTEGER NOT NULL, fields TEXT NOT NULL,
    PRIMARY KEY (run, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS execs (
    run TEXT NOT NULL, visit INTEGER NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (run, visit, key)) WITHOUT ROWID;
";

/// Checkpoints in a SQLite file (WAL mode): the embedded default. Runs of
/// many processes can share the file; each run id is held by one process at a
/// time (a lock file beside the database, released by the OS when the
/// process dies, so a crash never blocks a resume).
///
/// Each checkpoint is one transaction. A store field that did not change since
/// the checkpoint before is not written again. Commits are durable against a
/// process crash; against power loss too with
/// [`sync_every_write`](SqliteCheckpointer::sync_every_write).
#[derive(Clone)]
pub struct SqliteCheckpointer {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCheckpointer").field("path", &self.inner.path).finish()
    }
}

impl SqliteCheckpointer {
    /// Opens (or creates) the database at `path`. A file that is not a minllm
    /// checkpoint database, or is damaged, is an error and is left as it is.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let damaged =
            |e: rusqlite::Error| CheckpointError::Damaged { path: path.display().to_string(), reason: e.to_string() };
        let connection = Connection::open(&path).map_err(damaged)?;
        connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(damaged)?;
        let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(damaged)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CheckpointError::Damaged {
                path: path.display().to_string(),
                reason: format!("it cannot use WAL mode (journal mode `{mode}`)"),
            });
        }
        connection.pragma_update(None, "synchronous", "NORMAL").map_err(damaged)?;
        Self::check_format(&connection, &path)?;
        connection.execute_batch(SCHEMA).map_err(damaged)?;
        connection
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?1), ('version', ?2)",
                params![FORMAT, VERSION.to_string()],
            )
            .map_err(damaged)?;
        Ok(SqliteCheckpointer { inner: Arc::new(Inner { path, connection: Mutex::new(connection) }) })
    }

    /// Makes every write wait until it is on disk (`synchronous=FULL`):
    /// checkpoints survive power loss, at the cost of a disk flush each.
    pub fn sync_every_write(self) -> Result<Self, CheckpointError> {
        self.inner.connection.lock().pragma_update(None, "synchronous", "FULL").map_err(backend)?;
        Ok(self)
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Refuses a database with tables of its own and no minllm format row, or
    /// of a newer format.
    fn check_format(connection: &Connection, path: &Path) -> Result<(), CheckpointError> {
        let refuse = |reason: String| CheckpointError::Damaged { path: path.display().to_string(), reason };
        let tables: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(|e| refuse(e.to_string()))?;
        if tables == 0 {
            return Ok(());
        }
        let has_meta: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", [], |r| r.get(0))
            .map_err(|e| refuse(e.to_string()))?;
        let format: Option<String> = if has_meta == 1 {
            connection
                .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| r.get(0))
                .optional()
                .map_err(|e| refuse(e.to_string()))?
        } else {
            None
        };
        if format.as_deref() != Some(FORMAT) {
            return Err(refuse("it is a SQLite database of something else, not minllm checkpoints".to_owned()));
        }
        let version: Option<String> = connection
            .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| r.get(0))
            .optional()
            .map_err(|e| refuse(e.to_string()))?;
        match version.as_deref().and_then(|v| v.parse::<i64>().ok()) {
            Some(v) if v <= VERSION => Ok(()),
            other => Err(refuse(format!("its format version {other:?} is newer than this minllm's ({VERSION})"))),
        }
    }

    fn lock_path(&self, run: &str) -> PathBuf {
        let hex: String = run.bytes().map(|b| format!("{b:02x}")).collect();
        let mut dir = self.inner.path.clone().into_os_string();
        dir.push(".locks");
        PathBuf::from(dir).join(format!("{hex}.lock"))
    }

    fn read(&self, run: &str, seq: u64) -> Result<Option<Checkpoint>, CheckpointError> {
        let connection = self.inner.connection.lock();
        let row = connection
            .query_row(
                "SELECT parent, visit, path, steps, status, detail, answers, created_ms, fields FROM checkpoints \
                 WHERE run = ?1 AND seq = ?2",
                params![run, seq as i64],
                |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<Vec<u8>>>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, String>(8)?,
                    ))
                },
            )
            .optional()
            .map_err(backend)?;
        let Some((parent, visit, path, steps, status, detail, answers, created_ms, fields)) = row else {
            return Ok(None);
        };
        let damaged = |what: &str, e: String| CheckpointError::Damaged {
            path: self.inner.path.display().to_string(),
            reason: format!("checkpoint {seq} of run `{run}` has a bad {what}: {e}"),
        };
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&fields).map_err(|e| damaged("field list", e.to_string()))?;
        let mut blob = connection.prepare_cached("SELECT data FROM blobs WHERE id = ?1").map_err(backend)?;
        let mut loaded = Vec::with_capacity(map.len());
        for (name, at) in map {
            let data = match at {
                serde_json::Value::Number(id) => {
                    let id = id.as_i64().ok_or_else(|| damaged("blob number", id.to_string()))?;
                    blob.query_row(params![id], |r| r.get::<_, Vec<u8>>(0))
                        .map_err(|e| damaged(&format!("field `{name}`"), e.to_string()))?
                }
                serde_json::Value::String(hex) => {
                    from_hex(&hex).ok_or_else(|| damaged(&format!("field `{name}`"), "not hex".to_owned()))?
                }
                other => return Err(damaged(&format!("field `{name}`"), other.to_string())),
            };
            loaded.push((name, Field::Value(data)));
        }
        let fields = loaded;
        let damaged = |what: &str, e: serde_json::Error| damaged(what, e.to_string());
        let detail = detail.unwrap_or_default();
        let status = match status.as_str() {
            "running" => Status::Running,
            "paused" => Status::Paused { question: detail },
            "finished" => Status::Finished { action: String::from_utf8_lossy(&detail).into_owned() },
            other => {
                return Err(CheckpointError::Damaged {
                    path: self.inner.path.display().to_string(),
                    reason: format!("checkpoint {seq} of run `{run}` has an unknown status `{other}`"),
                });
            }
        };
        let answers: Vec<serde_json::Value> = serde_json::from_str(&answers).map_err(|e| damaged("answer list", e))?;
        let answers = answers.iter().map(|a| serde_json::to_vec(a).unwrap_or_default()).collect();
        Ok(Some(Checkpoint {
            seq,
            parent: parent.map(|p| p as u64),
            visit: visit as u64,
            path: serde_json::from_str(&path).map_err(|e| damaged("path", e))?,
            steps: serde_json::from_str(&steps).map_err(|e| damaged("step list", e))?,
            status,
            answers,
            fields,
            created_ms: created_ms as u64,
        }))
    }
}

fn backend(e: rusqlite::Error) -> CheckpointError {
    CheckpointError::Backend(e.to_string())
}

/// Holds a run's lock file open and locked.
struct LockFile(#[allow(dead_code)] File);

impl Checkpointer for SqliteCheckpointer {
    fn lock(&self, run: &str) -> Result<RunLock, CheckpointError> {
        let path = self.lock_path(run);
        let io = |e: std::io::Error| CheckpointError::Backend(format!("lock file {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock::new(LockFile(file))),
            Err(std::fs::TryLockError::WouldBlock) => Err(CheckpointError::Busy { run: run.to_owned() }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    fn put(&self, run: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let mut connection = self.inner.connection.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        put_in(&tx, run, checkpoint)?;
        tx.commit().map_err(backend)
    }

    fn put_with_exec(
        &self,
        run: &str,
        checkpoint: Option<&Checkpoint>,
        visit: u64,
        key: &str,
        value: &[u8],
    ) -> Result<(), CheckpointError> {
        let mut connection = self.inner.connection.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        if let Some(checkpoint) = checkpoint {
            put_in(&tx, run, checkpoint)?;
        }
        put_exec_in(&tx, run, visit, key, value)?;
        tx.commit().map_err(backend)
    }

    fn put_exec(&self, run: &str, visit: u64, key: &str, value: &[u8]) -> Result<(), CheckpointError> {
        put_exec_in(&self.inner.connection.lock(), run, visit, key, value)
    }

    fn get_exec(&self, run: &str, visit: u64, key: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
        self.inner
            .connection
            .lock()
            .prepare_cached("SELECT data FROM execs WHERE run = ?1 AND visit = ?2 AND key = ?3")
            .and_then(|mut s| s.query_row(params![run, visit as i64, key], |r| r.get(0)))
            .optional()
            .map_err(backend)
    }

    fn get(&self, run: &str, seq: u64) -> Result<Option<Checkpoint>, CheckpointError> {
        self.read(run, seq)
    }

    fn latest(&self, run: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let seq: Option<i64> = self
            .inner
            .connection
            .lock()
            .query_row("SELECT max(seq) FROM checkpoints WHERE run = ?1", params![run], |r| r.get(0))
            .map_err(backend)?;
        match seq {
            Some(seq) => self.read(run, seq as u64),
            None => Ok(None),
        }
    }

    fn history(&self, run: &str) -> Result<Vec<CheckpointInfo>, CheckpointError> {
        let connection = self.inner.connection.lock();
        let mut statement = connection
            .prepare_cached(
                "SELECT seq, parent, path, steps, status, created_ms FROM checkpoints WHERE run = ?1 ORDER BY seq",
            )
            .map_err(backend)?;
        let rows = statement
            .query_map(params![run], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(backend)?;
        let mut list = Vec::new();
        for row in rows {
            let (seq, parent, path, steps, status, created_ms) = row.map_err(backend)?;
            let path: Vec<String> = serde_json::from_str(&path).unwrap_or_default();
            let steps: Vec<u64> = serde_json::from_str(&steps).unwrap_or_default();
            list.push(CheckpointInfo {
                seq: seq as u64,
                parent: parent.map(|p| p as u64),
                step: steps.first().copied().unwrap_or(0),
                node: path.join(" > "),
                status: match status.as_str() {
                    "paused" => "paused",
                    "finished" => "finished",
                    _ => "running",
                },
                created_ms: created_ms as u64,
            });
        }
        Ok(list)
    }
}

/// Writes `checkpoint` in the transaction `tx`.
fn put_in(tx: &rusqlite::Transaction<'_>, run: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let seq = checkpoint.seq as i64;
    let (status, detail): (&str, Option<Vec<u8>>) = match &checkpoint.status {
        Status::Running => ("running", None),
        Status::Paused { question } => ("paused", Some(question.clone())),
        Status::Finished { action } => ("finished", Some(action.as_bytes().to_vec())),
    };
    let answers: Vec<serde_json::Value> =
        checkpoint.answers.iter().map(|a| serde_json::from_slice(a).unwrap_or(serde_json::Value::Null)).collect();
    let json = |v: &dyn erased::Json| v.to_json();
    let fields = field_map(tx, run, checkpoint)?;
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO checkpoints \
                 (run, seq, parent, visit, path, steps, status, detail, answers, created_ms, fields) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(backend)?
        .execute(params![
            run,
            seq,
            checkpoint.parent.map(|p| p as i64),
            checkpoint.visit as i64,
            json(&checkpoint.path),
            json(&checkpoint.steps),
            status,
            detail,
            json(&answers),
            checkpoint.created_ms as i64,
            fields,
        ]);
    if inserted.map_err(backend)? == 0 {
        return Err(CheckpointError::Conflict { run: run.to_owned(), seq: checkpoint.seq });
    }
    Ok(())
}

/// The checkpoint's fields as its row keeps them: a JSON object from each
/// name to the field's bytes in hex (small ones) or the number of its blob.
/// An unchanged field takes its parent's entry.
fn field_map(tx: &rusqlite::Transaction<'_>, run: &str, checkpoint: &Checkpoint) -> Result<String, CheckpointError> {
    let mut parent: Option<serde_json::Map<String, serde_json::Value>> = None;
    let mut map = serde_json::Map::new();
    for (name, field) in &checkpoint.fields {
        let entry = match field {
            Field::Value(data) if data.len() <= INLINE => serde_json::Value::String(to_hex(data)),
            Field::Value(data) => {
                tx.prepare_cached("INSERT INTO blobs (data) VALUES (?1)")
                    .and_then(|mut s| s.execute(params![data]))
                    .map_err(backend)?;
                serde_json::Value::from(tx.last_insert_rowid())
            }
            Field::Unchanged => {
                if parent.is_none() {
                    let text: Option<String> = tx
                        .prepare_cached("SELECT fields FROM checkpoints WHERE run = ?1 AND seq = ?2")
                        .and_then(|mut s| {
                            s.query_row(params![run, checkpoint.parent.map(|p| p as i64)], |r| r.get(0)).optional()
                        })
                        .map_err(backend)?;
                    parent = Some(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default());
                }
                parent.as_ref().and_then(|p| p.get(name)).cloned().ok_or_else(|| {
                    CheckpointError::Backend(format!(
                        "field `{name}` is unchanged from a parent checkpoint that does not have it"
                    ))
                })?
            }
        };
        map.insert(name.clone(), entry);
    }
    Ok(serde_json::Value::Object(map).to_string())
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Writes an `exec` record on `connection` (a transaction or not).
fn put_exec_in(connection: &Connection, run: &str, visit: u64, key: &str, value: &[u8]) -> Result<(), CheckpointError> {
    connection
        .prepare_cached("INSERT OR REPLACE INTO execs (run, visit, key, data) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![run, visit as i64, key, value]))
        .map(drop)
        .map_err(backend)
}

mod erased {
    /// A value written as JSON text in a column.
    pub(super) trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "null".to_owned())
        }
    }
}
