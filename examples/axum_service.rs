//! A small HTTP service to copy: users and their orders in Cassandra,
//! read through cachefw, with Prometheus metrics, JSON logs and a graceful
//! shutdown.
//!
//! ```text
//! cargo run --bin axum_service                 # kassandra in-process, in-memory cache
//! CACHEFW_CASSANDRA_URI=127.0.0.1:9042 REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --bin axum_service             # real servers
//! LISTEN_ADDR=0.0.0.0:8080 RUST_LOG=debug …    # where to listen (default 127.0.0.1:3000), log level
//! ```
//!
//! | route | what |
//! | --- | --- |
//! | `POST /users` `{"name","email"}` | creates a user (201, the user) |
//! | `GET /users/{id}` | the user, through the cache (404 when missing) |
//! | `GET /users?ids=a,b` | several users in one call (`find_many`), `null` for a missing one |
//! | `PUT /users/{id}` `{"name","email"}` | replaces the user; the cached copy is evicted |
//! | `DELETE /users/{id}` | deletes the user and its cached copy (204) |
//! | `POST /users/{id}/orders` `{"item","total_cents"}` | places an order (201) |
//! | `GET /users/{id}/orders` | the user's orders (one cached partition) |
//! | `GET /users/{id}/summary` | order count and total, a `#[cacheable]` method |
//! | `GET /metrics` | Prometheus text: cachefw's metrics |
//! | `GET /stats` | `cache.stats()` as JSON |
//!
//! Install the metrics recorder before building the cache: cachefw
//! registers its metric handles when a cache is built and when a call site
//! is first used, with whatever recorder is installed then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cachefw::{Cache, cache_evict, cacheable};
use cachefw_cassandra::{Entity, Repository};
use kassandra_tester::KassandraTester;
use kassandra_tester::kassandra::KassandraSession;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use scylla::client::session_builder::SessionBuilder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "users", ttl = "10m")]
pub struct User {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
    pub email: String,
}

/// A user's orders form one partition, cached as a whole for listings.
#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "shop",
    table = "orders",
    ttl = "1m",
    cache_partitions = true
)]
pub struct Order {
    #[partition_key]
    pub user_id: Uuid,
    #[clustering_key]
    pub id: Uuid,
    pub item: String,
    pub total_cents: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub orders: u64,
    pub total_cents: i64,
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    email: String,
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
    total_cents: i64,
}

#[derive(Deserialize)]
struct Ids {
    ids: String,
}

/// Buckets of `cachefw_load_seconds`, in seconds. Without them the
/// Prometheus exporter renders histograms as summaries, over which
/// `histogram_quantile` (and so a load p99 across instances) cannot be
/// computed.
const LOAD_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
struct App {
    cache: Cache,
    users: Arc<Repository<User>>,
    orders: Arc<Repository<Order>>,
    metrics: PrometheusHandle,
}

impl App {
    /// Computed from the user's orders; cached for 30 s, evicted when the
    /// user places an order.
    #[cacheable(key = "summary:<user_id>", ttl = "30s", cache = self.cache)]
    async fn summary(&self, user_id: Uuid) -> Result<Summary, cachefw_cassandra::Error> {
        // Boxed: this cached call's future would hold the repository's own
        // cached read inline, too large for a worker's 2 MiB stack in a
        // debug build.
        let orders = Box::pin(self.orders.find_partition(&OrderPartition { user_id })).await?;
        Ok(Summary {
            orders: orders.len() as u64,
            total_cents: orders.iter().map(|order| order.total_cents).sum(),
        })
    }

    /// Saving the order evicts the cached partition (the repository does)
    /// and the summary (the attribute does).
    #[cache_evict(key = "summary:<order.user_id>", cache = self.cache)]
    async fn place_order(&self, order: &Order) -> Result<(), cachefw_cassandra::Error> {
        self.orders.save(order).await
    }
}

/// A failure of the database, answered as a 500 and logged; cache failures
/// never get here (they are served from the database).
struct ApiError(cachefw_cassandra::Error);

impl From<cachefw_cassandra::Error> for ApiError {
    fn from(error: cachefw_cassandra::Error) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "request failed");
        let body = Json(serde_json::json!({ "error": "the database failed" }));
        (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn create_user(
    State(app): State<App>,
    Json(new): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let user = User {
        id: Uuid::new_v4(),
        name: new.name,
        email: new.email,
    };
    app.users.save(&user).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn get_user(State(app): State<App>, Path(id): Path<Uuid>) -> ApiResult<Response> {
    Ok(match app.users.find(&UserKey { id }).await? {
        Some(user) => Json(user).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

/// The most ids one `GET /users?ids=` may ask for.
const MAX_IDS: usize = 100;

/// How long requests in flight may take to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// `?ids=a,b,c`: one batch read; ids that do not parse, or more than
/// `MAX_IDS` of them, are a 400.
async fn get_users(
    State(app): State<App>,
    Query(query): Query<Ids>,
) -> ApiResult<Result<Json<Vec<Option<User>>>, StatusCode>> {
    let keys: Result<Vec<UserKey>, _> = query
        .ids
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| id.parse().map(|id| UserKey { id }))
        .collect();
    let Ok(keys) = keys else {
        return Ok(Err(StatusCode::BAD_REQUEST));
    };
    // A bound on one request's work (and on the loader's batch).
    if keys.len() > MAX_IDS {
        return Ok(Err(StatusCode::BAD_REQUEST));
    }
    Ok(Ok(Json(app.users.find_many(&keys).await?)))
}

async fn put_user(
    State(app): State<App>,
    Path(id): Path<Uuid>,
    Json(new): Json<NewUser>,
) -> ApiResult<Json<User>> {
    let user = User {
        id,
        name: new.name,
        email: new.email,
    };
    app.users.save(&user).await?;
    Ok(Json(user))
}

async fn delete_user(State(app): State<App>, Path(id): Path<Uuid>) -> ApiResult<StatusCode> {
    app.users.delete(&UserKey { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_order(
    State(app): State<App>,
    Path(user_id): Path<Uuid>,
    Json(new): Json<NewOrder>,
) -> ApiResult<(StatusCode, Json<Order>)> {
    let order = Order {
        user_id,
        id: Uuid::new_v4(),
        item: new.item,
        total_cents: new.total_cents,
    };
    app.place_order(&order).await?;
    Ok((StatusCode::CREATED, Json(order)))
}

async fn list_orders(
    State(app): State<App>,
    Path(user_id): Path<Uuid>,
) -> ApiResult<Json<Vec<Order>>> {
    let orders = app
        .orders
        .find_partition(&OrderPartition { user_id })
        .await?;
    Ok(Json(orders))
}

async fn get_summary(
    State(app): State<App>,
    Path(user_id): Path<Uuid>,
) -> ApiResult<Json<Summary>> {
    Ok(Json(app.summary(user_id).await?))
}

async fn render_metrics(State(app): State<App>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

async fn stats(State(app): State<App>) -> Json<cachefw::Stats> {
    Json(app.cache.stats())
}

/// One log line per request.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

fn router(app: App) -> Router {
    Router::new()
        .route("/users", get(get_users).post(create_user))
        .route(
            "/users/{id}",
            get(get_user).put(put_user).delete(delete_user),
        )
        .route("/users/{id}/orders", get(list_orders).post(create_order))
        .route("/users/{id}/summary", get(get_summary))
        .route("/metrics", get(render_metrics))
        .route("/stats", get(stats))
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

/// Ctrl-C or SIGTERM (what an orchestrator sends before killing).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing the requests in flight");
}

/// Serves until a shutdown signal, over the Cassandra node at `node`.
async fn serve(
    node: String,
    real_cassandra: bool,
    metrics: PrometheusHandle,
) -> Result<(), Failure> {
    let mut session = SessionBuilder::new().known_node(&node);
    if !real_cassandra {
        // kassandra has no schema-agreement tables to wait on.
        session = session.auto_await_schema_agreement(false);
    }
    let session = Arc::new(session.build().await?);
    let builder = Cache::builder().namespace("shop");
    let cache = match std::env::var("REDIS_URL") {
        // The URL may hold a password: never log it.
        Ok(url) => {
            tracing::info!(cache = "redis", "cache: Redis (from REDIS_URL)");
            builder.redis(url).build().await?
        }
        Err(_) => {
            tracing::info!(
                cache = "memory",
                "cache: in-memory (set REDIS_URL to use Redis)"
            );
            builder.in_memory().build().await?
        }
    };
    cachefw_cassandra::create_keyspace(&session, "shop", 1).await?;
    let users = Repository::<User>::new(session.clone(), cache.clone()).await?;
    let orders = Repository::<Order>::new(session, cache.clone()).await?;
    users.create_table().await?;
    orders.create_table().await?;
    spawn_upkeep(metrics.clone(), cache.clone());
    let app = App {
        cache: cache.clone(),
        users: Arc::new(users),
        orders: Arc::new(orders),
        metrics,
    };

    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    // Requests in flight get `DRAIN` to finish after the signal; past it
    // the server stops waiting for them (they end with the runtime, after
    // the cache's shutdown below).
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(app)).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stopping.send(true);
    });
    tokio::select! {
        served = std::future::IntoFuture::into_future(server) => served?,
        () = async {
            if stopped.wait_for(|stop| *stop).await.is_ok() {
                tokio::time::sleep(DRAIN).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => tracing::warn!(drain = ?DRAIN, "requests still in flight; stopping anyway"),
    }
    // Background loads (refreshes, fills past a timeout) finish first.
    cache.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

fn install_metrics() -> Result<PrometheusHandle, Failure> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("cachefw_load_seconds".to_owned()),
            &LOAD_BUCKETS,
        )?
        .install_recorder()?;
    Ok(handle)
}

/// Every 5 s: the exporter's upkeep (it drains its histograms then; without
/// an HTTP listener of its own, it is ours to run), and the evictions that
/// wait for Redis, which `stats()` has and the metrics do not, published
/// as a gauge to alert on.
fn spawn_upkeep(metrics: PrometheusHandle, cache: Cache) {
    let pending = metrics::gauge!("cachefw_pending_evictions", "namespace" => "shop");
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics.run_upkeep();
            pending.set(cache.stats().pending_evictions as f64);
        }
    });
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // Before any cache is built.
    let metrics = install_metrics()?;

    if let Ok(node) = std::env::var("CACHEFW_CASSANDRA_URI") {
        tracing::info!(cassandra = %node, "cassandra: from CACHEFW_CASSANDRA_URI");
        return serve(node, true, metrics).await;
    }
    tracing::info!(
        "cassandra: kassandra in-process (set CACHEFW_CASSANDRA_URI to use a real node)"
    );
    let outcome = Arc::new(std::sync::Mutex::new(None));
    KassandraTester::new(KassandraSession::new())
        .in_scope(|addr: SocketAddr| {
            let outcome = outcome.clone();
            let metrics = metrics.clone();
            async move {
                let result = serve(addr.to_string(), false, metrics).await;
                if let Ok(mut slot) = outcome.lock() {
                    slot.get_or_insert(result);
                }
                Ok::<(), ()>(())
            }
        })
        .await
        .map_err(|()| "kassandra stopped")?;
    let result = outcome.lock().map_err(|_| "a poisoned outcome")?.take();
    result.unwrap_or(Ok(()))
}
