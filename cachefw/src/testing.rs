//! Helpers for testing code that uses cachefw: a private `redis-server` per
//! test, and recipes for asserting what the cache did. Behind the `testing`
//! feature, for your dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! cachefw = { version = "0.1", features = ["testing"] }
//! ```
//!
//! # Unit tests: in memory, and `stats()`
//!
//! A cache built with no backend is in this process's memory: no server,
//! nothing shared between tests. Give each test its own [`Cache`] (pass it
//! to the code under test, or use `cache = …` in the attributes) rather
//! than [`install`](crate::install)ing one: the installed cache is one per
//! process, and tests run in parallel.
//!
//! Whether a call was a hit is in [`Cache::stats`]: a hit adds to `hits`
//! and calls no loader; a miss adds to `misses` and, once its loader ran,
//! to `loads`.
//!
//! ```
//! use cachefw::{Cache, cacheable};
//!
//! struct Prices { cache: Cache }
//!
//! impl Prices {
//!     #[cacheable(key = "price:<sku>", ttl = "1m", cache = self.cache)]
//!     async fn price(&self, sku: &str) -> u64 {
//!         sku.len() as u64 // the slow source
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachefw::Error> {
//! let prices = Prices { cache: Cache::builder().build().await? };
//! assert_eq!(prices.price("A1").await, 2);             // a miss: the source ran
//! assert_eq!(prices.price("A1").await, 2);             // a hit
//! let stats = prices.cache.stats();
//! assert_eq!((stats.hits, stats.misses, stats.loads), (1, 1, 1));
//! assert_eq!(prices.cache.get::<u64>("price:A1").await?, Some(2)); // what is stored
//! # Ok(()) }
//! ```
//!
//! To assert that an eviction took effect, read the key with
//! [`Cache::get`] (the key as the attribute renders it, without the
//! namespace and version): `None` once it is gone. `stats().errors` stays
//! 0 while the backend works; assert it in tests that expect no failure.
//!
//! # Integration tests: a private Redis
//!
//! [`RedisServer::start`] runs a `redis-server` of its own on a free
//! loopback port (never 6379), empty, saving nothing, killed when the
//! value is dropped. Tests that start their own servers can run in
//! parallel. It needs `redis-server` 6.2 or newer on `PATH` (Debian:
//! `apt-get install redis-server`; elsewhere set `REDIS_SERVER` to the
//! binary).
//!
//! ```no_run
//! use std::time::Duration;
//! use cachefw::Cache;
//! use cachefw::testing::RedisServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachefw::Error> {
//! let redis = RedisServer::start();
//! let cache = Cache::builder().redis(redis.url()).namespace("test").build().await?;
//! let load = || async { Ok::<_, std::io::Error>(42u32) };
//! cache.get_or_load("answer", Duration::from_secs(60), load).await.ok();
//! cache.get_or_load("answer", Duration::from_secs(60), load).await.ok();
//! assert_eq!(cache.stats().hits, 1);
//! # Ok(()) }
//! ```
//!
//! # Faults
//!
//! What your code does when Redis fails is worth a test too: cachefw keeps
//! answering from the loaders, and counts the failures in
//! `stats().errors`.
//!
//! - [`stop`](RedisServer::stop) kills the server: connections are
//!   refused (the port stays reserved), as after a crash.
//! - [`restart`](RedisServer::restart) starts it again on the same port,
//!   empty.
//! - [`restart_gracefully`](RedisServer::restart_gracefully) stops it as
//!   an operator would (`SIGTERM`) and starts it again: with persistence
//!   turned on (`start_with(&["--appendonly", "yes"])`), with its data.
//! - [`freeze`](RedisServer::freeze) stops the process (`SIGSTOP`):
//!   connections stay open and nothing answers, as with a hung server or a
//!   network partition; every command waits for the cache's
//!   [`timeout`](crate::CacheBuilder::timeout). [`thaw`](RedisServer::thaw)
//!   resumes it.
//!
//! ```no_run
//! use std::time::Duration;
//! use cachefw::Cache;
//! use cachefw::testing::RedisServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachefw::Error> {
//! let mut redis = RedisServer::start();
//! let cache = Cache::builder().redis(redis.url()).build().await?;
//! let load = || async { Ok::<_, std::io::Error>(42u32) };
//!
//! redis.freeze();
//! let got = cache.get_or_load("answer", Duration::from_secs(60), load).await;
//! assert_eq!(got.ok(), Some(42));                    // served by the loader
//! assert!(cache.stats().errors > 0);                 // and counted
//! redis.thaw();
//!
//! redis.stop();
//! assert_eq!(cache.get_or_load("answer", Duration::from_secs(60), load).await.ok(), Some(42));
//! redis.restart();                                   // caching resumes by itself
//! # Ok(()) }
//! ```
//!
//! Unix only (the server is frozen with signals).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

#[cfg(doc)]
use crate::cache::Cache;

/// How long a server may take to answer its first `PING`.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A private `redis-server` on a free loopback port, for tests. Dropping
/// it kills the server and removes its directory.
///
/// ```no_run
/// use cachefw::testing::RedisServer;
///
/// let mut redis = RedisServer::start();
/// let url = redis.url();   // redis://127.0.0.1:<port>
/// redis.stop();            // connections are refused
/// redis.restart();         // the same port, empty
/// redis.freeze();          // connections hang
/// redis.thaw();
/// # drop(url);
/// ```
///
/// A test process that is killed (rather than failing or ending) leaves
/// its servers running: find them with `pgrep -f cachefw-test-redis`.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    launch: Launch,
    child: Option<Child>,
    /// The port, bound but not listening, while no server runs: nobody
    /// else takes it, and connections to it are refused.
    hold: Option<Socket>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("url", &self.url())
            .field("running", &self.is_running())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How a server is launched beyond the kit's defaults. For cachefw's own
/// test harness (`tests/src` of its repository), which builds TLS servers,
/// passwords, replication and clusters on this kit; not a stable API.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct Launch {
    /// More `redis-server` arguments, after the kit's own.
    pub args: Vec<String>,
    /// Serve TLS only on the port (`--port 0 --tls-port <port>`).
    pub tls: Option<TlsFiles>,
    /// The `default` user's password (`--requirepass`).
    pub password: Option<String>,
    /// Run on the command before each spawn (the harness ends the server
    /// with the test process, which takes `unsafe` this crate forbids).
    pub prepare: Option<fn(&mut Command)>,
}

/// The certificates of a TLS server, in PEM.
#[doc(hidden)]
#[derive(Clone)]
pub struct TlsFiles {
    /// The server's certificate.
    pub cert_pem: String,
    /// The server certificate's private key.
    pub key_pem: String,
    /// The CA that clients' certificates must chain to.
    pub ca_pem: String,
    /// `--tls-auth-clients yes`: clients must present a certificate.
    pub client_auth: bool,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// When `redis-server` cannot be run or does not come up; the message
    /// says why and how to install it. [`try_start`](Self::try_start)
    /// returns that as an error instead.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with more `redis-server` arguments, such as
    /// `["--maxmemory", "10mb"]`.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(args: &[&str]) -> Self {
        Self::try_start_with(args).unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`start`](Self::start), or why not.
    ///
    /// # Errors
    ///
    /// When `redis-server` cannot be run (not installed: the error says
    /// how to install it) or does not answer within 15 s.
    pub fn try_start() -> io::Result<Self> {
        Self::try_start_with(&[])
    }

    /// [`start_with`](Self::start_with), or why not.
    ///
    /// # Errors
    ///
    /// As [`try_start`](Self::try_start).
    pub fn try_start_with(args: &[&str]) -> io::Result<Self> {
        Self::try_launch(Launch {
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            ..Launch::default()
        })
    }

    /// A server launched as `launch` says, or why not.
    #[doc(hidden)]
    pub fn try_launch(launch: Launch) -> io::Result<Self> {
        // Another process may take the port between our probe and the
        // server's bind: a server that exits at once gets another port.
        let mut last = io::Error::other("no attempt");
        for _ in 0..5 {
            let mut server = Self::reserved(launch.clone())?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(error),
                Err(error) => last = error,
            }
        }
        Err(io::Error::other(format!(
            "redis-server did not start on any of 5 free ports: {last}"
        )))
    }

    /// A server that is not running yet, on a port held for it
    /// (connections are refused); [`restart`](Self::restart) starts it.
    #[doc(hidden)]
    pub fn reserved(launch: Launch) -> io::Result<Self> {
        let hold = hold_port(0)?;
        let port = bound_port(&hold)?;
        Ok(Self {
            port,
            dir: scratch_dir(port),
            launch,
            child: None,
            hold: Some(hold),
        })
    }

    /// `redis://127.0.0.1:<port>`, for [`CacheBuilder::redis`](crate::CacheBuilder::redis)
    /// (`rediss://` for a server launched with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.launch.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The server's scratch directory: its log, its TLS files.
    #[doc(hidden)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is running (frozen or not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server, as a crash would. Open connections break and new
    /// ones are refused until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.hold = hold_port(self.port).ok();
        }
    }

    /// Starts the server again (stopping it first if it runs) on the same
    /// port, with no data, and waits until it answers.
    ///
    /// # Panics
    ///
    /// When it does not come back within 15 s.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(error) if Instant::now() > deadline => {
                    panic!(
                        "redis-server did not restart on port {}: {error}",
                        self.port
                    )
                }
                // The old socket may linger for a moment.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Stops the server as an operator would (`SIGTERM`): it finishes the
    /// command at hand, writes what its persistence settings say (an
    /// append-only file is fsynced) and exits; then starts it again on the
    /// same port. Without persistence it comes back empty, as after
    /// [`restart`](Self::restart).
    ///
    /// # Panics
    ///
    /// When the server does not exit or come back within 15 s.
    pub fn restart_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = rustix::process::Pid::from_child(&child);
            if let Err(error) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
                panic!("cannot signal redis-server on port {}: {error}", self.port);
            }
            let deadline = Instant::now() + READY_WITHIN;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => panic!("redis-server on port {} did not exit on SIGTERM", self.port),
                }
            }
            self.hold = hold_port(self.port).ok();
        }
        self.restart();
    }

    /// Freezes the server (`SIGSTOP`): connections stay open, new ones are
    /// accepted by the kernel, and nothing is answered until
    /// [`thaw`](Self::thaw). A frozen server is killed as usual when
    /// dropped.
    ///
    /// # Panics
    ///
    /// When the server is not running or the signal cannot be sent.
    pub fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Resumes a frozen server (`SIGCONT`); it then answers what it was
    /// sent meanwhile.
    ///
    /// # Panics
    ///
    /// As [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let Some(child) = &self.child else {
            panic!("redis-server on port {} is not running", self.port);
        };
        let pid = rustix::process::Pid::from_child(child);
        if let Err(error) = rustix::process::kill_process(pid, signal) {
            panic!("cannot signal redis-server on port {}: {error}", self.port);
        }
    }

    fn spawn(&mut self) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let port = self.port.to_string();
        let log = self.dir.join("redis.log");
        // A restart appends to the log: readiness is read after this.
        let logged = std::fs::metadata(&log).map_or(0, |meta| meta.len());
        let mut command = Command::new(binary());
        match &self.launch.tls {
            None => command.args(["--port", &port]),
            Some(tls) => {
                let file = |name: &str, pem: &str| {
                    let path = self.dir.join(name);
                    std::fs::write(&path, pem).map(|()| path)
                };
                let auth = if tls.client_auth { "yes" } else { "no" };
                command
                    .args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(file("server.pem", &tls.cert_pem)?)
                    .arg("--tls-key-file")
                    .arg(file("server.key", &tls.key_pem)?)
                    .arg("--tls-ca-cert-file")
                    .arg(file("ca.pem", &tls.ca_pem)?)
                    .args(["--tls-auth-clients", auth])
            }
        };
        if let Some(password) = &self.launch.password {
            command.args(["--requirepass", password]);
        }
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            // Redis rewrites its process title; keep a name to find it by.
            .args([
                "--proc-title-template",
                "{title} {listen-addr} cachefw-test-redis",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.launch.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(prepare) = self.launch.prepare {
            prepare(&mut command);
        }
        // The server binds the port itself: the hold lets go just before.
        self.hold = None;
        let mut child = command.spawn().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "cannot run {:?}: {error}. Install Redis (Debian: apt-get install \
                     redis-server) or set REDIS_SERVER to the path of redis-server",
                    binary()
                ),
            )
        })?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.hold = hold_port(self.port).ok();
                let mut why = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut why);
                }
                why.push_str(&std::fs::read_to_string(&log).unwrap_or_default());
                return Err(io::Error::other(format!(
                    "redis-server exited ({status}): {why}"
                )));
            }
            if self.is_ready(&log, logged) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.hold = hold_port(self.port).ok();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no PONG on port {} within {READY_WITHIN:?}", self.port),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl RedisServer {
    /// Whether the server just spawned serves: a plain one answers `PING`
    /// (after `AUTH` when it has a password); a TLS one, which the kit
    /// cannot speak to, has logged that it accepts connections.
    fn is_ready(&self, log: &Path, logged: u64) -> bool {
        if self.launch.tls.is_none() {
            return answers_ping(self.port, self.launch.password.as_deref());
        }
        std::fs::read(log).is_ok_and(|bytes| {
            let since = usize::try_from(logged).unwrap_or(usize::MAX);
            bytes
                .get(since..)
                .is_some_and(|new| String::from_utf8_lossy(new).contains("to accept connections"))
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// A loopback socket bound to `port` (0: one the kernel picks) and not
/// listening: the port is taken, and connections to it are refused.
fn hold_port(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    // After a stop, the server's connections linger in TIME_WAIT on this
    // port, which refuses a plain bind: the hold would silently fail.
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    Ok(socket)
}

fn bound_port(socket: &Socket) -> io::Result<u16> {
    socket
        .local_addr()?
        .as_socket()
        .map(|addr| addr.port())
        .ok_or_else(|| io::Error::other("the held socket has no IP address"))
}

/// A directory of its own, named for `pgrep -f cachefw-test-redis`.
fn scratch_dir(port: u16) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "cachefw-test-redis-{}-{port}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

fn answers_ping(port: u16, password: Option<&str>) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut request = Vec::new();
    let mut expected = Vec::new();
    if let Some(password) = password {
        request.extend_from_slice(b"*2\r\n$4\r\nAUTH\r\n");
        request.extend_from_slice(format!("${}\r\n", password.len()).as_bytes());
        request.extend_from_slice(password.as_bytes());
        request.extend_from_slice(b"\r\n");
        expected.extend_from_slice(b"+OK\r\n");
    }
    request.extend_from_slice(b"PING\r\n");
    expected.extend_from_slice(b"+PONG\r\n");
    let mut reply = vec![0u8; expected.len()];
    stream.write_all(&request).is_ok() && stream.read_exact(&mut reply).is_ok() && reply == expected
}
