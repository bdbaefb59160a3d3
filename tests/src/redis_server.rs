use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redis::{ClientTlsConfig, Commands, IntoConnectionInfo, TlsCertificates};
use socket2::{Domain, Socket, Type};

use crate::TestPki;
use crate::tls::install_crypto_provider;

/// How long a server may take to answer its first `PING`.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A private `redis-server` on a free loopback port.
///
/// ```no_run
/// let mut redis = cachefw_tests::RedisServer::start();
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// redis.stop();          // connections now fail
/// redis.restart();       // same port, empty data
/// # drop(url);
/// ```
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Holds the port while no server runs, so that no other test's server
    /// takes it and answers in its place.
    hold: Option<PortHold>,
    /// Arguments beyond the kit's own, such as cluster mode.
    extra: Vec<String>,
    /// TLS only (`--port 0`), with these certificates.
    tls: Option<Tls>,
    /// The `default` user's password (`requirepass`), if any.
    password: Option<String>,
}

/// How a TLS server is set up.
#[derive(Clone)]
struct Tls {
    pki: Arc<TestPki>,
    /// `--tls-auth-clients yes`: clients must present a certificate the CA
    /// signed.
    client_auth: bool,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// When `redis-server` cannot be found or does not come up; the message
    /// says how to install it.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with more `redis-server` arguments.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(args: &[&str]) -> Self {
        Self::launch(args, |_| {})
    }

    /// A server that speaks only TLS (`--tls-port <port> --port 0`), with
    /// the server certificate of `pki` (valid for `127.0.0.1`) and its CA;
    /// with `client_auth`, clients must present a certificate that CA
    /// signed (`--tls-auth-clients yes`), otherwise none is asked for. Its
    /// [`url`](Self::url) is `rediss://127.0.0.1:<port>`; the kit's own
    /// connections trust the CA and present the client certificate.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_tls(pki: &TestPki, client_auth: bool) -> Self {
        Self::start_tls_with(pki, client_auth, &[])
    }

    /// [`start_tls`](Self::start_tls) with more `redis-server` arguments.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_tls_with(pki: &TestPki, client_auth: bool, args: &[&str]) -> Self {
        let tls = Tls {
            pki: Arc::new(pki.clone()),
            client_auth,
        };
        Self::launch(args, |server| server.tls = Some(tls.clone()))
    }

    /// A server whose `default` user needs `password` (`requirepass`):
    /// connections without it are answered `NOAUTH`. The kit's own
    /// connections authenticate.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_password(password: &str) -> Self {
        Self::launch(&[], |server| server.password = Some(password.to_owned()))
    }

    fn launch(args: &[&str], configure: impl Fn(&mut Self)) -> Self {
        // Another process may take the port between our probe and the
        // server's bind; a server that exits at once gets another port.
        let mut why = String::new();
        for _ in 0..5 {
            let mut server = Self::reserved();
            server.extra = args.iter().map(|arg| (*arg).to_owned()).collect();
            configure(&mut server);
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => why = error,
            }
        }
        panic!("redis-server did not start on any of 5 free ports: {why}");
    }

    /// [`start`](Self::start) with an append-only file, fsynced as
    /// `appendfsync` says (`"everysec"`, `"always"`, `"no"`):
    /// [`restart`](Self::restart) after a crash and
    /// [`restart_gracefully`](Self::restart_gracefully) come back with its
    /// data. With `"everysec"` a crash loses up to about a second of
    /// writes; a graceful restart loses none.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_durable(appendfsync: &str) -> Self {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", appendfsync])
    }

    /// A server that is not running, on a port held for it (connections are
    /// refused): for tests of a cache built while its Redis is down.
    /// [`restart`](Self::restart) starts it.
    pub fn reserved() -> Self {
        let hold = PortHold::new();
        let port = hold.port;
        Self {
            port,
            dir: scratch_dir(port),
            child: None,
            hold: Some(hold),
            extra: Vec::new(),
            tls: None,
            password: None,
        }
    }

    /// The server's URL, `redis://127.0.0.1:<port>` (`rediss://` for a TLS
    /// server).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The server's scratch directory (its log, its TLS files).
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The certificates of a TLS server.
    pub fn pki(&self) -> Option<&TestPki> {
        self.tls.as_ref().map(|tls| &*tls.pki)
    }

    /// Creates or replaces the ACL user `user` with exactly `rules` (after
    /// `reset`), such as `[">password", "on", "~app:*", "+get"]`.
    ///
    /// # Panics
    ///
    /// When Redis refuses a rule.
    pub fn acl_setuser(&self, user: &str, rules: &[&str]) {
        let mut args: Vec<&[u8]> = vec![b"SETUSER", user.as_bytes(), b"reset"];
        args.extend(rules.iter().map(|rule| rule.as_bytes()));
        self.cmd::<()>("ACL", &args);
    }

    /// A client of this server for the kit's own connections: the
    /// password of the `default` user, and for a TLS server its CA and the
    /// client certificate.
    fn client(&self) -> redis::RedisResult<redis::Client> {
        let mut info = self.url().into_connection_info()?;
        if let Some(password) = &self.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        match &self.tls {
            None => redis::Client::open(info),
            Some(tls) => {
                install_crypto_provider();
                redis::Client::build_with_tls(
                    info,
                    TlsCertificates {
                        client_tls: Some(ClientTlsConfig {
                            client_cert: tls.pki.client_cert_pem.clone().into_bytes(),
                            client_key: tls.pki.client_key_pem.clone().into_bytes(),
                        }),
                        root_cert: Some(tls.pki.ca_pem.clone().into_bytes()),
                    },
                )
            }
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (like a crash: nothing more is saved). Open
    /// connections break and new ones are refused until
    /// [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.hold = PortHold::on(self.port);
        }
    }

    /// Freezes the server with `SIGSTOP`: connections stay open, the kernel
    /// still accepts new ones, and nothing is answered until
    /// [`thaw`](Self::thaw). A frozen server is killed as usual on drop.
    ///
    /// # Panics
    ///
    /// When the server is not running or the signal cannot be sent.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes a frozen server (`SIGCONT`); it then answers what it was sent
    /// meanwhile.
    ///
    /// # Panics
    ///
    /// As [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("redis-server on {} is not running", self.port));
        let pid = libc::pid_t::try_from(child.id()).unwrap_or_else(|e| panic!("pid: {e}"));
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
    }

    /// Writes a snapshot (`SAVE`): the data a later
    /// [`restart`](Self::restart) comes back with, as a server restarted
    /// from its RDB file after a crash would.
    ///
    /// # Panics
    ///
    /// When `SAVE` fails.
    pub fn snapshot(&self) {
        self.cmd::<()>("SAVE", &[]);
    }

    /// Makes this server a replica of `primary` (`REPLICAOF`); from then on
    /// it answers writes with `READONLY`.
    ///
    /// # Panics
    ///
    /// When the command fails.
    pub fn replicate(&self, primary: &RedisServer) {
        let port = primary.port.to_string();
        self.cmd::<()>("REPLICAOF", &[b"127.0.0.1", port.as_bytes()]);
    }

    /// Makes a replica a primary again (`REPLICAOF NO ONE`).
    ///
    /// # Panics
    ///
    /// When the command fails.
    pub fn promote(&self) {
        self.cmd::<()>("REPLICAOF", &[b"NO", b"ONE"]);
    }

    /// Stops the server as an operator would (`SIGTERM`): it finishes the
    /// command at hand, fsyncs its append-only file and exits; then starts
    /// it again on the same port, with its data.
    ///
    /// # Panics
    ///
    /// When the server does not exit or come back within a few seconds.
    pub fn restart_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = libc::pid_t::try_from(child.id()).unwrap_or_else(|e| panic!("pid: {e}"));
            // SAFETY: kill(2) with a pid of our own child and a valid signal.
            let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
            assert_eq!(sent, 0, "kill({pid}, SIGTERM) failed");
            let deadline = Instant::now() + READY_WITHIN;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => panic!("redis-server on {} did not exit on SIGTERM", self.port),
                }
            }
            self.hold = PortHold::on(self.port);
        }
        self.restart();
    }

    /// Starts the server again on the same port, with the data of its last
    /// [`snapshot`](Self::snapshot), if any, and none otherwise; a server
    /// started by [`start_durable`](Self::start_durable) comes back with
    /// what its append-only file holds.
    ///
    /// # Panics
    ///
    /// When the server does not come back within a few seconds.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => {
                    panic!("redis-server did not restart on port {}: {why}", self.port)
                }
                // The old socket may linger for a moment.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// A plain blocking connection, for reading and writing raw keys.
    ///
    /// # Panics
    ///
    /// When the server does not accept the connection.
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|e| panic!("cannot connect to test redis on {}: {e}", self.port))
    }

    /// Runs `command` on a fresh connection, waiting at most a second for
    /// the connection and the reply (a frozen or stopped server answers
    /// `None`, as does an error reply).
    pub fn try_cmd<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        let client = self.client().ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        conn.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
        command.query(&mut conn).ok()
    }

    /// Runs one command and returns its reply.
    ///
    /// # Panics
    ///
    /// When the command fails or the reply does not convert to `T`.
    pub fn cmd<T: redis::FromRedisValue>(&self, name: &str, args: &[&[u8]]) -> T {
        let mut command = redis::cmd(name);
        for arg in args {
            command.arg(*arg);
        }
        command
            .query(&mut self.connection())
            .unwrap_or_else(|e| panic!("test redis {name} failed: {e}"))
    }

    /// The raw bytes at `key`.
    pub fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        self.cmd("GET", &[key.as_bytes()])
    }

    /// Stores raw bytes at `key`, with no expiry.
    pub fn raw_set(&self, key: &str, value: &[u8]) {
        self.cmd::<()>("SET", &[key.as_bytes(), value]);
    }

    /// Every key in the server, sorted (by `SCAN`, for the small data sets of
    /// tests).
    pub fn keys(&self) -> Vec<String> {
        let mut conn = self.connection();
        let mut keys: Vec<String> = conn
            .scan::<String>()
            .and_then(|iter| iter.collect())
            .unwrap_or_else(|e| panic!("test redis SCAN failed: {e}"));
        // SCAN may return a key twice (while Redis rehashes its table,
        // here right after thousands of deletions): each key once.
        keys.sort();
        keys.dedup();
        keys
    }

    /// The remaining TTL of `key` in milliseconds, as Redis reports it
    /// (`-2` missing, `-1` no expiry).
    pub fn pttl(&self, key: &str) -> i64 {
        self.cmd("PTTL", &[key.as_bytes()])
    }

    fn spawn(&mut self) -> Result<(), String> {
        self.hold = None;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let port = self.port.to_string();
        let mut command = Command::new(binary());
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(tls) => {
                let file = |name: &str, pem: &str| {
                    let path = self.dir.join(name);
                    std::fs::write(&path, pem)
                        .map(|()| path)
                        .map_err(|e| format!("{}: {e}", self.dir.display()))
                };
                let cert = file("server.pem", &tls.pki.server_cert_pem)?;
                let key = file("server.key", &tls.pki.server_key_pem)?;
                let ca = file("ca.pem", &tls.pki.ca_pem)?;
                let auth = if tls.client_auth { "yes" } else { "no" };
                command
                    .args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .arg("--tls-ca-cert-file")
                    .arg(ca)
                    .args(["--tls-auth-clients", auth])
            }
        };
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        kill_with_parent(&mut command);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot run {:?}: {e}. Install Redis (Debian: apt-get install redis-server, \
                 or run scripts/test, which does) or set REDIS_SERVER to its path",
                binary()
            )
        })?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.hold = PortHold::on(self.port);
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                return Err(format!("redis-server exited ({status}): {stderr}{log}"));
            }
            if self.answers_ping() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.hold = PortHold::on(self.port);
                return Err(format!(
                    "no PONG on port {} within {READY_WITHIN:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl RedisServer {
    /// Whether the server answers `PING`: over a plain socket for a plain
    /// server, through the kit's client for one with TLS or a password.
    fn answers_ping(&self) -> bool {
        if self.tls.is_none() && self.password.is_none() {
            return answers_ping(self.port);
        }
        let Ok(client) = self.client() else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        redis::cmd("PING").query::<String>(&mut conn).is_ok()
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

/// A loopback TCP socket bound to a port but not listening: the port is
/// taken (the kernel hands it to nobody else) and connections to it are
/// refused, as to a stopped server.
struct PortHold {
    port: u16,
    _socket: Socket,
}

impl PortHold {
    /// Holds a free port the kernel picks.
    fn new() -> Self {
        Self::on(0).unwrap_or_else(|| panic!("no free loopback port"))
    }

    /// Holds `port`, if it is free.
    fn on(port: u16) -> Option<Self> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
            .ok()?;
        let port = socket.local_addr().ok()?.as_socket()?.port();
        Some(Self {
            port,
            _socket: socket,
        })
    }
}

fn scratch_dir(port: u16) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "cachefw-redis-{}-{port}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// Ends the server with the test process even when the process is killed
/// and no destructor runs.
#[cfg(target_os = "linux")]
fn kill_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_with_parent(_: &mut Command) {}
