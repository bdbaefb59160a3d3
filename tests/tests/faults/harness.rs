//! The test kit itself: servers start on private ports, stop, restart on the
//! same port, and leave nothing behind.

use std::net::TcpStream;

use cachefw_tests::RedisServer;

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn servers_are_private_and_restart_on_their_port() {
    let mut a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.port(), 6379);
    a.raw_set("k", b"v");
    assert_eq!(b.raw_get("k"), None);

    let port = a.port();
    a.stop();
    assert!(!a.is_running());
    assert!(!accepts(port), "a stopped server refuses connections");
    a.restart();
    assert_eq!(a.port(), port);
    assert!(a.is_running());
    assert_eq!(a.raw_get("k"), None, "a restarted server starts empty");
}

#[test]
fn reserved_port_refuses_until_started() {
    let mut server = RedisServer::reserved();
    assert!(!server.is_running());
    assert!(!accepts(server.port()));
    server.restart();
    server.raw_set("k", b"v");
    assert_eq!(server.raw_get("k").as_deref(), Some(&b"v"[..]));
}

#[test]
fn dropping_a_server_stops_it() {
    let server = RedisServer::start();
    let port = server.port();
    drop(server);
    assert!(!accepts(port));
}
