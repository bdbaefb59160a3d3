//! The axum service, run as its binary on a free port (kassandra
//! in-process; the in-memory cache, or Redis from `REDIS_URL`) and driven
//! with real HTTP requests: hits, an eviction after a PUT, a batch read, a
//! `#[cacheable]` method and its `#[cache_evict]`, the Prometheus text,
//! JSON logs, and a graceful shutdown on SIGTERM.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

// The testing kit a user of cachefw gets (`testing` feature).
use cachefw::testing::RedisServer;
use serde_json::{Value, json};

/// The service's process, its address, and its log lines as they come.
struct Service {
    child: Child,
    base: String,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Service {
    fn start(redis_url: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_axum_service"));
        command
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env_remove("REDIS_URL")
            .env_remove("CACHEFW_CASSANDRA_URI")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = redis_url {
            command.env("REDIS_URL", url);
        }
        let mut child = command.spawn().expect("the service starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut service = Self {
            child,
            base: String::new(),
            lines,
            log: Vec::new(),
        };
        let listening = service.wait_for_log("listening", Duration::from_secs(60));
        let addr = listening["fields"]["addr"]
            .as_str()
            .expect("the address in the listening line");
        service.base = format!("http://{addr}");
        service
    }

    /// Reads log lines until one whose message is `message`; every line
    /// must be a JSON object.
    fn wait_for_log(&mut self, message: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {message:?} log line within {within:?}:\n{:#?}",
                        self.log
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the service ended before logging {message:?}:\n{:#?}",
                        self.log
                    )
                }
            };
            self.log.push(line.clone());
            let parsed: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            if parsed["fields"]["message"] == message {
                return parsed;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, as an orchestrator sends it; the exit status.
    fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        self.wait_for_log("stopped", Duration::from_secs(20));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the service did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of the Prometheus text: name and labels.
type Sample = (String, BTreeMap<String, String>);

fn parse_metrics(text: &str) -> BTreeMap<Sample, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
                (key.to_owned(), value.trim_end_matches('"').to_owned())
            })
            .collect();
        samples.insert((name.to_owned(), labels), value);
    }
    samples
}

fn sample(name: &str, labels: &[(&str, &str)]) -> Sample {
    let labels = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    (name.to_owned(), labels)
}

struct Client {
    http: reqwest::Client,
}

impl Client {
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = tokio::time::timeout(Duration::from_secs(20), request.send())
            .await
            .expect("an answer within 20 s")
            .expect("the request is answered");
        let status = response.status().as_u16();
        let body = response.text().await.expect("a body");
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or(Value::String(body))
        };
        (status, body)
    }

    async fn get(&self, url: String) -> (u16, Value) {
        self.send(self.http.get(url)).await
    }

    async fn metrics(&self, service: &Service) -> BTreeMap<Sample, f64> {
        let (status, body) = self.get(service.url("/metrics")).await;
        assert_eq!(status, 200);
        parse_metrics(body.as_str().expect("text"))
    }
}

async fn exercise(redis: Option<&RedisServer>) {
    let tier = if redis.is_some() { "redis" } else { "memory" };
    let mut service = Service::start(redis.map(RedisServer::url).as_deref());
    let client = Client {
        http: reqwest::Client::new(),
    };

    let (status, ada) = client
        .send(
            client
                .http
                .post(service.url("/users"))
                .json(&json!({"name": "Ada", "email": "ada@example.com"})),
        )
        .await;
    assert_eq!(status, 201, "{ada}");
    let id = ada["id"].as_str().expect("an id").to_owned();
    let user_url = service.url(&format!("/users/{id}"));

    // A miss, then a hit.
    let hits = sample(
        "cachefw_hits_total",
        &[("namespace", "shop"), ("function", "-"), ("tier", tier)],
    );
    let misses = sample(
        "cachefw_misses_total",
        &[("namespace", "shop"), ("function", "-")],
    );
    let before = client.metrics(&service).await;
    for _ in 0..2 {
        assert_eq!(client.get(user_url.clone()).await, (200, ada.clone()));
    }
    let after = client.metrics(&service).await;
    let delta = |sample: &Sample, before: &BTreeMap<Sample, f64>, after: &BTreeMap<Sample, f64>| {
        after.get(sample).copied().unwrap_or(0.0) - before.get(sample).copied().unwrap_or(0.0)
    };
    assert_eq!(delta(&misses, &before, &after), 1.0, "{after:#?}");
    assert_eq!(delta(&hits, &before, &after), 1.0, "{after:#?}");

    // A PUT evicts the cached copy: the next read has the new name.
    let (status, _) = client
        .send(
            client
                .http
                .put(user_url.clone())
                .json(&json!({"name": "Ada Lovelace", "email": "ada@example.com"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, read) = client.get(user_url.clone()).await;
    assert_eq!((status, &read["name"]), (200, &json!("Ada Lovelace")));
    let evicted = client.metrics(&service).await;
    assert_eq!(
        delta(&misses, &after, &evicted),
        1.0,
        "the read after the PUT missed"
    );

    // A batch read: the user and a missing one.
    let missing = "00000000-0000-4000-8000-000000000000";
    let (status, found) = client
        .get(service.url(&format!("/users?ids={id},{missing}")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(found[0]["name"], "Ada Lovelace");
    assert_eq!(found[1], Value::Null);
    let too_many = vec![missing; 101].join(",");
    let (status, _) = client
        .get(service.url(&format!("/users?ids={too_many}")))
        .await;
    assert_eq!(status, 400, "more than 100 ids are refused");

    // Orders, and the summary cached by `#[cacheable]` and evicted by
    // `#[cache_evict]` when an order is placed.
    let orders_url = service.url(&format!("/users/{id}/orders"));
    let summary_url = service.url(&format!("/users/{id}/summary"));
    for (item, cents) in [("tea", 350), ("cake", 500)] {
        let (status, _) = client
            .send(
                client
                    .http
                    .post(orders_url.clone())
                    .json(&json!({"item": item, "total_cents": cents})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, orders) = client.get(orders_url.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(orders.as_array().map(Vec::len), Some(2), "{orders}");
    for _ in 0..2 {
        assert_eq!(
            client.get(summary_url.clone()).await,
            (200, json!({"orders": 2, "total_cents": 850}))
        );
    }
    let (status, _) = client
        .send(
            client
                .http
                .post(orders_url.clone())
                .json(&json!({"item": "jam", "total_cents": 150})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        client.get(summary_url.clone()).await,
        (200, json!({"orders": 3, "total_cents": 1000})),
        "the order evicted the summary"
    );

    let metrics = client.metrics(&service).await;
    let summary_site = [("namespace", "shop"), ("function", "axum_service::summary")];
    assert_eq!(
        metrics.get(&sample(
            "cachefw_hits_total",
            &[summary_site[0], summary_site[1], ("tier", tier)]
        )),
        Some(&1.0),
        "{metrics:#?}"
    );
    assert_eq!(
        metrics.get(&sample("cachefw_misses_total", &summary_site)),
        Some(&2.0)
    );
    assert_eq!(
        metrics.get(&sample(
            "cachefw_loads_total",
            &[summary_site[0], summary_site[1], ("outcome", "ok")]
        )),
        Some(&2.0)
    );
    // The load histogram has buckets (a Prometheus histogram, not a
    // summary), so histogram_quantile works over it.
    let inf_bucket = sample(
        "cachefw_load_seconds_bucket",
        &[summary_site[0], summary_site[1], ("le", "+Inf")],
    );
    assert_eq!(metrics.get(&inf_bucket), Some(&2.0), "{metrics:#?}");
    assert!(
        metrics.contains_key(&sample(
            "cachefw_load_seconds_bucket",
            &[summary_site[0], summary_site[1], ("le", "0.005")]
        )),
        "{metrics:#?}"
    );
    assert_eq!(
        metrics.get(&sample("cachefw_breaker_open", &[("namespace", "shop")])),
        Some(&0.0)
    );
    // Labels hold call sites and kinds, never a key or a value.
    for (name, labels) in metrics.keys() {
        if !name.starts_with("cachefw_") {
            continue;
        }
        for (key, value) in labels {
            assert!(
                [
                    "namespace",
                    "function",
                    "tier",
                    "outcome",
                    "kind",
                    "op",
                    "le",
                    "quantile"
                ]
                .contains(&key.as_str()),
                "{name}: {key}"
            );
            assert!(
                !value.contains(&id) && !value.contains("Ada"),
                "{name}: {value}"
            );
        }
    }

    let (status, stats) = client.get(service.url("/stats")).await;
    assert_eq!(status, 200);
    assert!(
        stats["hits"].as_u64().is_some_and(|hits| hits >= 2),
        "{stats}"
    );
    assert_eq!(stats["errors"], 0, "{stats}");
    assert_eq!(stats["breaker"], "closed", "{stats}");

    if let Some(redis) = redis {
        let cached = format!("shop:v1:users:{id}");
        let client = redis::Client::open(redis.url()).expect("a redis URL");
        let mut link = client
            .get_multiplexed_async_connection()
            .await
            .expect("connects");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("shop:*")
            .query_async(&mut link)
            .await
            .expect("KEYS");
        assert!(keys.contains(&cached), "{keys:?}");
    }

    let status = service.terminate();
    assert!(status.success(), "{status:?}\n{:#?}", service.log);
    let logged = service.log.join("\n");
    assert!(logged.contains("\"request\""), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_users_and_orders_with_no_services() {
    exercise(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_users_and_orders_over_redis() {
    let redis = RedisServer::start();
    exercise(Some(&redis)).await;
}
