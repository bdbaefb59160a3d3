//! The Cassandra example runs with no services (kassandra in-process, the
//! in-memory cache) and with Redis from `REDIS_URL`.

use std::process::Command;

use cachefw_tests::RedisServer;

fn run(redis_url: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cassandra_service"));
    command
        .env_remove("REDIS_URL")
        .env_remove("CACHEFW_CASSANDRA_URI");
    if let Some(url) = redis_url {
        command.env("REDIS_URL", url);
    }
    let output = command.output().expect("the example runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "cassandra: kassandra in-process",
        "first read : Some(\"Ada\")",
        "second read: Some(\"Ada\")",
        "events of the user: 5",
        "after delete: None",
        "1 hits",
        "0 errors",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    stdout
}

#[test]
fn runs_with_no_services() {
    assert!(run(None).contains("cache: in-memory"));
}

#[test]
fn runs_with_redis() {
    let redis = RedisServer::start();
    assert!(run(Some(&redis.url())).contains("cache: Redis (from REDIS_URL)"));
    assert!(
        redis
            .keys()
            .iter()
            .any(|k| k.starts_with("service:v1:events:"))
    );
}
