//! A Restate cluster on this machine, for the scale-out example and the
//! tests: the pinned `restate-server` (installed by `scripts/restate-server`
//! from the npm registry, cached under `target/`) started on loopback with
//! ports of its own and a scratch directory, worker processes, and a small
//! round-robin proxy in front of them standing in for a load balancer. All
//! are stopped when dropped. A server that cannot be installed or started is
//! a panic (a failing test), never a skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to come up.
const START: Duration = Duration::from_secs(60);

/// A running `restate-server`.
pub struct RestateServer {
    child: Child,
    dir: PathBuf,
    /// Where the ingress listens: `127.0.0.1:<port>` (invocations).
    pub ingress: String,
    /// Where the admin API listens (registrations, invocation status).
    pub admin: String,
}

/// The pinned server binary, installed on first use.
pub fn server_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(root.join("scripts/restate-server"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/restate-server: {e}"));
    assert!(output.status.success(), "scripts/restate-server failed: {:?}", output.status);
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("no free port: {e}"));
    listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("no local address: {e}"))
}

impl RestateServer {
    /// Starts a server in a fresh scratch directory and waits until it serves.
    pub fn start() -> RestateServer {
        let binary = server_binary();
        let dir = std::env::temp_dir().join(format!("minllm-restate-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        let (ingress, admin, node) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.join("server.log")).unwrap_or_else(|e| panic!("server log: {e}"));
        let child = Command::new(&binary)
            .args(["--listen-mode", "tcp", "--no-logo", "--base-dir"])
            .arg(&dir)
            .env("RESTATE_INGRESS__BIND_ADDRESS", format!("127.0.0.1:{ingress}"))
            .env("RESTATE_ADMIN__BIND_ADDRESS", format!("127.0.0.1:{admin}"))
            .env("RESTATE_BIND_ADDRESS", format!("127.0.0.1:{node}"))
            .env("RESTATE_ADVERTISED_ADDRESS", format!("http://127.0.0.1:{node}/"))
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("server log: {e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let server =
            RestateServer { child, dir, ingress: format!("127.0.0.1:{ingress}"), admin: format!("127.0.0.1:{admin}") };
        let started = Instant::now();
        while server.get(&server.admin, "/health").is_none_or(|(status, _)| status != 200) {
            assert!(started.elapsed() < START, "restate-server did not come up in {START:?}: {}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// `GET path` on `addr`: the status and body, or `None` when nothing answers.
    pub fn get(&self, addr: &str, path: &str) -> Option<(u16, String)> {
        http(addr, "GET", path, None)
    }

    /// `POST path` on `addr` with a JSON body.
    pub fn post(&self, addr: &str, path: &str, json: &str) -> Option<(u16, String)> {
        http(addr, "POST", path, Some(json))
    }
}

impl Drop for RestateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub fn http(addr: &str, method: &str, path: &str, json: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let body = json.unwrap_or("");
    let kind = if json.is_some() { "Content-Type: application/json\r\n" } else { "" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{kind}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// A worker process (`restate_worker`, or any binary serving flows), killed
/// when dropped: a failing test leaves none behind.
pub struct Worker {
    /// The process.
    pub child: Child,
    /// Where it serves.
    pub port: u16,
}

impl Worker {
    /// Starts `command` (which serves on `port`) and waits until it listens.
    pub fn start(mut command: Command, port: u16) -> Worker {
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start the worker: {e}"));
        let worker = Worker { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "the worker did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        worker
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RestateServer {
    /// Registers the deployment at `127.0.0.1:<port>` (a worker, or a proxy
    /// in front of several).
    pub fn register(&self, port: u16) {
        let body = format!("{{\"uri\":\"http://127.0.0.1:{port}\"}}");
        let registered = self.post(&self.admin, "/deployments", &body);
        assert!(registered.as_ref().is_some_and(|(s, _)| *s == 200 || *s == 201), "registration: {registered:?}");
    }
}

/// A small round-robin TCP proxy on loopback, standing in for the load
/// balancer in front of a service's workers: each connection goes to the
/// next backend that accepts it (a dead one is skipped). It runs until the
/// test process ends.
pub struct Proxy {
    /// Where it listens.
    pub port: u16,
    connections: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Proxy {
    /// A proxy on a free port in front of the workers on `backends`.
    pub fn start(backends: Vec<u16>) -> Proxy {
        Proxy::start_on(0, backends).unwrap_or_else(|e| panic!("the proxy's port: {e}"))
    }

    /// A proxy on `port` (0: a free one) in front of the workers on `backends`.
    pub fn start_on(port: u16, backends: Vec<u16>) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(vec![0; backends.len()]));
        let counts = std::sync::Arc::clone(&connections);
        std::thread::spawn(move || {
            let mut next = 0;
            for client in listener.incoming().flatten() {
                // The next backend that accepts, in turn.
                let backend = (0..backends.len()).find_map(|k| {
                    let at = (next + k) % backends.len();
                    TcpStream::connect(("127.0.0.1", backends[at])).ok().map(|stream| (at, stream))
                });
                let Some((at, backend)) = backend else { continue };
                next = at + 1;
                if let Ok(mut counts) = counts.lock() {
                    counts[at] += 1;
                }
                pipe(client, backend);
            }
        });
        Ok(Proxy { port, connections })
    }

    /// How many connections went to each backend so far.
    pub fn connections(&self) -> Vec<usize> {
        self.connections.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Copies bytes both ways between `a` and `b` until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    };
    if let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) {
        copy(a, b2);
        copy(b, a2);
    }
}

/// Serves, until killed, the services `make` builds (a flow's
/// [`definitions`](minllm::restate::RestateFlow::definitions)) on
/// `127.0.0.1:<port>`, as an example's `serve <port>` command does: the exit
/// code says how it ended (2 for a port that is not one).
pub fn serve_worker(
    port: &str,
    make: impl FnOnce() -> Result<Vec<minllm::restate::ServiceDefinition>, String>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("not a port: {port}");
        return ExitCode::from(2);
    };
    let services = match make() {
        Ok(services) => services,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("cannot start a tokio runtime");
        return ExitCode::FAILURE;
    };
    eprintln!("worker {} serves on 127.0.0.1:{port}; register it with Restate", std::process::id());
    match runtime.block_on(minllm::restate::serve(([127, 0, 0, 1], port).into(), services)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot serve on 127.0.0.1:{port}: {e}");
            ExitCode::FAILURE
        }
    }
}
