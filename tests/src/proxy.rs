use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A loopback TCP proxy in front of a server that can hold back every reply
/// for a while: a slow Redis, for timeout and circuit-breaker tests.
///
/// ```no_run
/// let redis = cachefw_tests::RedisServer::start();
/// let proxy = cachefw_tests::DelayProxy::start(redis.port());
/// proxy.set_delay(std::time::Duration::from_secs(2)); // replies now take 2 s
/// # drop(proxy.url());
/// ```
pub struct DelayProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

struct Shared {
    /// The port new connections are passed to.
    upstream: AtomicU16,
    delay_ms: AtomicU64,
    /// Reply chunks containing these bytes are held back for that long.
    hold: Mutex<Option<(Vec<u8>, Duration)>>,
    /// How many reply chunks were held back.
    held: AtomicU64,
    /// Chunks passed on from clients to the server.
    requests: AtomicU64,
    stopping: AtomicBool,
    /// Every socket the proxy holds, to close them when it stops.
    streams: Mutex<Vec<TcpStream>>,
}

impl DelayProxy {
    /// Starts a proxy on a free loopback port in front of `upstream_port`,
    /// passing bytes through with no delay.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("proxy cannot bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy has no address: {e}"))
            .port();
        let shared = Arc::new(Shared {
            upstream: AtomicU16::new(upstream_port),
            delay_ms: AtomicU64::new(0),
            hold: Mutex::new(None),
            held: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect((
                        Ipv4Addr::LOCALHOST,
                        shared.upstream.load(Ordering::SeqCst),
                    )) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    shared.track(&client);
                    shared.track(&server);
                    pump(&shared, &client, &server, false);
                    pump(&shared, &server, &client, true);
                }
            })
        };
        Self {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// The proxy's URL, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many chunks of requests have reached the server so far (a
    /// request's bytes usually arrive as one): a test that must know a
    /// request was sent polls this.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Passes new connections to the server on `port` from now on (what a
    /// DNS or virtual IP switch does); open connections stay where they are.
    pub fn set_upstream(&self, port: u16) {
        self.shared.upstream.store(port, Ordering::SeqCst);
    }

    /// Holds back each reply chunk for `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }
}

impl DelayProxy {
    /// Holds back, for `delay`, each reply chunk that contains `pattern`
    /// (and only those): a reply carrying an old value can then arrive after
    /// messages the server sent later on other connections.
    pub fn hold_replies_containing(&self, pattern: &[u8], delay: Duration) {
        *self
            .shared
            .hold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((pattern.to_vec(), delay));
    }

    /// How many reply chunks were held back so far: counted when the hold
    /// starts.
    pub fn held(&self) -> u64 {
        self.shared.held.load(Ordering::SeqCst)
    }
}

impl Shared {
    /// The hold for `chunk`, if it contains the pattern.
    fn hold_for(&self, chunk: &[u8]) -> Option<Duration> {
        let hold = self
            .hold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (pattern, delay) = hold.as_ref()?;
        chunk
            .windows(pattern.len().max(1))
            .any(|window| window == pattern.as_slice())
            .then_some(*delay)
    }

    fn track(&self, stream: &TcpStream) {
        if let Ok(clone) = stream.try_clone() {
            self.streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(clone);
        }
    }
}

/// Copies `from` to `to` on a thread of its own, delaying each chunk when
/// `delayed`, until either side closes.
fn pump(shared: &Arc<Shared>, from: &TcpStream, to: &TcpStream, delayed: bool) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let shared = shared.clone();
    thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let read = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let delay = shared.delay_ms.load(Ordering::SeqCst);
            if delayed && delay > 0 {
                thread::sleep(Duration::from_millis(delay));
            }
            if delayed && let Some(hold) = shared.hold_for(&buffer[..read]) {
                shared.held.fetch_add(1, Ordering::SeqCst);
                thread::sleep(hold);
            }
            if shared.stopping.load(Ordering::SeqCst) || to.write_all(&buffer[..read]).is_err() {
                break;
            }
            if !delayed {
                shared.requests.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for stream in self
            .shared
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so that it sees `stopping`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
