use std::sync::Arc;
use std::time::Duration;

use cachefw::testing::{Launch, TlsFiles};
use redis::{ClientTlsConfig, Commands, IntoConnectionInfo, TlsCertificates};

use crate::TestPki;
use crate::tls::install_crypto_provider;

/// A private `redis-server` on a free loopback port: the users' test kit
/// ([`cachefw::testing::RedisServer`], which launches, stops, restarts,
/// freezes and thaws it) with what the suite needs beyond it: TLS and
/// passwords with the kit's own client for them, raw reads and writes,
/// ACL users, snapshots and replication. It also ends with the test
/// process when that is killed (Linux).
///
/// ```no_run
/// let mut redis = cachefw_tests::RedisServer::start();
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// redis.stop();          // connections now fail
/// redis.restart();       // same port, empty data
/// # drop(url);
/// ```
pub struct RedisServer {
    server: cachefw::testing::RedisServer,
    /// The certificates of a TLS server, for the kit's own connections.
    pki: Option<Arc<TestPki>>,
    /// The `default` user's password (`requirepass`), if any.
    password: Option<String>,
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
        Self::launch(args, None, false, None)
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
        Self::launch(args, Some(pki), client_auth, None)
    }

    /// A server whose `default` user needs `password` (`requirepass`):
    /// connections without it are answered `NOAUTH`. The kit's own
    /// connections authenticate.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_password(password: &str) -> Self {
        Self::launch(&[], None, false, Some(password))
    }

    fn launch(
        args: &[&str],
        tls: Option<&TestPki>,
        client_auth: bool,
        password: Option<&str>,
    ) -> Self {
        let server = cachefw::testing::RedisServer::try_launch(Self::settings(
            args,
            tls,
            client_auth,
            password,
        ))
        .unwrap_or_else(|e| panic!("{e} (scripts/test installs redis-server when it is missing)"));
        Self {
            server,
            pki: tls.map(|pki| Arc::new(pki.clone())),
            password: password.map(str::to_owned),
        }
    }

    fn settings(
        args: &[&str],
        tls: Option<&TestPki>,
        client_auth: bool,
        password: Option<&str>,
    ) -> Launch {
        Launch {
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            tls: tls.map(|pki| TlsFiles {
                cert_pem: pki.server_cert_pem.clone(),
                key_pem: pki.server_key_pem.clone(),
                ca_pem: pki.ca_pem.clone(),
                client_auth,
            }),
            password: password.map(str::to_owned),
            prepare: Some(kill_with_parent),
        }
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
    ///
    /// # Panics
    ///
    /// When no loopback port is free.
    pub fn reserved() -> Self {
        let server =
            cachefw::testing::RedisServer::reserved(Self::settings(&[], None, false, None))
                .unwrap_or_else(|e| panic!("no free loopback port: {e}"));
        Self {
            server,
            pki: None,
            password: None,
        }
    }

    /// The server's URL, `redis://127.0.0.1:<port>` (`rediss://` for a TLS
    /// server).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The server's scratch directory (its log, its TLS files).
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.server.dir()
    }

    /// The certificates of a TLS server.
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_deref()
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
        match &self.pki {
            None => redis::Client::open(info),
            Some(pki) => {
                install_crypto_provider();
                redis::Client::build_with_tls(
                    info,
                    TlsCertificates {
                        client_tls: Some(ClientTlsConfig {
                            client_cert: pki.client_cert_pem.clone().into_bytes(),
                            client_key: pki.client_key_pem.clone().into_bytes(),
                        }),
                        root_cert: Some(pki.ca_pem.clone().into_bytes()),
                    },
                )
            }
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Kills the server (like a crash: nothing more is saved). Open
    /// connections break and new ones are refused until
    /// [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Freezes the server with `SIGSTOP`: connections stay open, the kernel
    /// still accepts new ones, and nothing is answered until
    /// [`thaw`](Self::thaw). A frozen server is killed as usual on drop.
    ///
    /// # Panics
    ///
    /// When the server is not running or the signal cannot be sent.
    pub fn freeze(&self) {
        self.server.freeze();
    }

    /// Resumes a frozen server (`SIGCONT`); it then answers what it was sent
    /// meanwhile.
    ///
    /// # Panics
    ///
    /// As [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.server.thaw();
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
        let port = primary.port().to_string();
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
        self.server.restart_gracefully();
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
        self.server.restart();
    }

    /// A plain blocking connection, for reading and writing raw keys.
    ///
    /// # Panics
    ///
    /// When the server does not accept the connection.
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|e| panic!("cannot connect to test redis on {}: {e}", self.port()))
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
}

/// Ends the server with the test process even when the process is killed
/// and no destructor runs.
#[cfg(target_os = "linux")]
fn kill_with_parent(command: &mut std::process::Command) {
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
fn kill_with_parent(_: &mut std::process::Command) {}
