use std::process::Command;
use std::time::{Duration, Instant};

use crate::RedisServer;

/// A private Redis Cluster: primaries on free loopback ports, every slot
/// assigned, no replicas.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `primaries` cluster-mode servers, joins them with
    /// `redis-cli --cluster create`, and waits until the cluster is up.
    ///
    /// # Panics
    ///
    /// When a server does not start or the cluster does not form; set
    /// `REDIS_CLI` to use a `redis-cli` that is not on `PATH`.
    pub fn start(primaries: usize) -> Self {
        let nodes: Vec<_> = (0..primaries)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let cli = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned());
        let output = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(
                nodes
                    .iter()
                    .map(|node| format!("127.0.0.1:{}", node.port())),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cli}: {e}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.is_up() {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    fn is_up(&self) -> bool {
        self.nodes.iter().all(|node| {
            let info: String = node.cmd("CLUSTER", &[b"INFO"]);
            info.contains("cluster_state:ok")
        })
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, to read their keys or run commands on each.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Every key of the cluster, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<_> = self.nodes.iter().flat_map(RedisServer::keys).collect();
        keys.sort();
        keys
    }
}
