//! The README's first command works: the quick start runs with no services,
//! and against Redis when `REDIS_URL` is set.

use std::process::Command;

use cachefw_tests::RedisServer;

fn run_quickstart(redis_url: Option<&str>) -> String {
    run_quickstart_with_stderr(redis_url).0
}

/// Runs the quick start with `RUST_LOG=debug`; its stdout and stderr.
fn run_quickstart_with_stderr(redis_url: Option<&str>) -> (String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    command.env_remove("REDIS_URL").env("RUST_LOG", "debug");
    if let Some(url) = redis_url {
        command.env("REDIS_URL", url);
    }
    let output = command.output().expect("quickstart runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "quickstart failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

fn assert_tells_the_story(stdout: &str) {
    for line in [
        "1. first call   miss: from the source",
        "2. second call  hit:  from the cache",
        "3. update_email(42) evicted user:42",
        "   next call    miss: from the source",
        "4. 100 concurrent callers of cold user:7 served",
        "by 1 load(s) of the source",
        "0 errors",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn runs_in_memory_with_no_services() {
    let stdout = run_quickstart(None);
    assert!(stdout.contains("backend: in-memory"), "{stdout}");
    assert_tells_the_story(&stdout);
}

#[test]
fn runs_against_redis_from_redis_url() {
    let redis = RedisServer::start();
    let stdout = run_quickstart(Some(&redis.url()));
    assert!(
        stdout.contains("backend: Redis (from REDIS_URL)"),
        "{stdout}"
    );
    assert_tells_the_story(&stdout);
    assert!(
        redis.keys().contains(&"quickstart:v1:user:7".to_owned()),
        "{:?}",
        redis.keys()
    );
    // A second run finds the old entries and still tells the same story.
    assert_tells_the_story(&run_quickstart(Some(&redis.url())));
}

#[test]
fn survives_redis_being_down() {
    let redis = RedisServer::reserved();
    let stdout = run_quickstart(Some(&redis.url()));
    assert!(stdout.contains("4. 100 concurrent callers"), "{stdout}");
    assert!(stdout.contains("by 1 load(s) of the source"), "{stdout}");
}

#[test]
fn never_prints_the_password_of_redis_url() {
    // The server wants this password: a wrong one would fail `build()`.
    let redis = RedisServer::start_with_password("pa/ss-s3cret");
    let url = redis.url().replace("redis://", "redis://:pa%2Fss-s3cret@");
    let (stdout, stderr) = run_quickstart_with_stderr(Some(&url));
    assert!(stdout.contains("4. 100 concurrent callers"), "{stdout}");
    for output in [&stdout, &stderr] {
        assert!(!output.contains("s3cret"), "the password leaked:\n{output}");
    }
}

/// The user-facing test kit against the example: a private Redis from
/// `cachefw::testing`, and the cache API to see what the run stored.
#[test]
fn runs_against_a_redis_of_the_testing_kit() {
    #[derive(serde::Deserialize)]
    struct User {
        name: String,
    }

    let mut redis = cachefw::testing::RedisServer::start();
    assert_tells_the_story(&run_quickstart(Some(&redis.url())));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stored = runtime.block_on(async {
        let cache = cachefw::Cache::builder()
            .redis(redis.url())
            .namespace("quickstart")
            .build()
            .await
            .expect("builds");
        cache.get::<User>("user:7").await.expect("get")
    });
    assert_eq!(stored.map(|user| user.name).as_deref(), Some("User 7"));

    // With the server gone, the example still serves every caller.
    redis.stop();
    let stdout = run_quickstart(Some(&redis.url()));
    assert!(stdout.contains("by 1 load(s) of the source"), "{stdout}");
    redis.restart();
    assert_tells_the_story(&run_quickstart(Some(&redis.url())));
}
