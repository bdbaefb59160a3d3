use std::process::Command;
use std::time::{Duration, Instant};

use crate::{RedisServer, TestPki};

/// How long a cluster may take to form, or to settle after a fault.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// A private Redis Cluster: primaries on free loopback ports, every slot
/// assigned, optionally with replicas that take over when a primary fails.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `primaries` cluster-mode servers with no replicas, joins them
    /// with `redis-cli --cluster create`, and waits until the cluster is up.
    ///
    /// # Panics
    ///
    /// When a server does not start or the cluster does not form; set
    /// `REDIS_CLI` to use a `redis-cli` that is not on `PATH`.
    pub fn start(primaries: usize) -> Self {
        Self::start_with_replicas(primaries, 0)
    }

    /// [`start`](Self::start) with `replicas` replicas per primary, and a
    /// short node timeout (1 s), so that a failed primary is replaced by its
    /// replica within a few seconds.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_replicas(primaries: usize, replicas: usize) -> Self {
        Self::form(primaries, replicas, None, &[])
    }

    /// [`start_with_replicas`](Self::start_with_replicas) with more
    /// `redis-server` arguments for every node, such as
    /// `["--cluster-allow-reads-when-down", "yes"]`.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_replicas_and(primaries: usize, replicas: usize, args: &[&str]) -> Self {
        Self::form(primaries, replicas, None, args)
    }

    /// [`start`](Self::start) over TLS only: every node listens with
    /// `--tls-port` and `--port 0`, the cluster bus and replication use TLS
    /// too (`--tls-cluster yes`, `--tls-replication yes`), and clients must
    /// present a certificate the CA of `pki` signed. [`urls`](Self::urls)
    /// are `rediss://127.0.0.1:<port>`.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_tls(primaries: usize, pki: &TestPki) -> Self {
        Self::form(primaries, 0, Some(pki), &[])
    }

    fn form(primaries: usize, replicas: usize, tls: Option<&TestPki>, extra: &[&str]) -> Self {
        let timeout = if replicas > 0 { "1000" } else { "2000" };
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            timeout,
        ];
        if tls.is_some() {
            args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
        }
        args.extend(extra);
        let nodes: Vec<_> = (0..primaries * (1 + replicas))
            .map(|_| match tls {
                None => RedisServer::start_with(&args),
                Some(pki) => RedisServer::start_tls_with(pki, true, &args),
            })
            .collect();
        let mut create = Command::new(cli());
        if let Some(pki) = tls {
            let dir = nodes[0].dir();
            let file = |name: &str, pem: &str| {
                let path = dir.join(name);
                std::fs::write(&path, pem).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                path
            };
            create
                .arg("--tls")
                .arg("--cacert")
                .arg(file("cli-ca.pem", &pki.ca_pem))
                .arg("--cert")
                .arg(file("cli-client.pem", &pki.client_cert_pem))
                .arg("--key")
                .arg(file("cli-client.key", &pki.client_key_pem));
        }
        let output = create
            .args(["--cluster", "create"])
            .args(
                nodes
                    .iter()
                    .map(|node| format!("127.0.0.1:{}", node.port())),
            )
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli()));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_until("the cluster to come up", |c| {
            c.is_up() && c.primaries().len() == primaries
        });
        if replicas > 0 {
            cluster.wait_until("every replica to sync", |c| {
                c.nodes.iter().all(|node| {
                    let info: String = node.cmd("INFO", &[b"replication"]);
                    info.contains("role:master") || info.contains("master_link_status:up")
                })
            });
        }
        cluster
    }

    /// Whether every node that answers reports `cluster_state:ok` (a
    /// frozen or stopped node answers nothing, and is not asked).
    pub fn is_up(&self) -> bool {
        let mut command = redis::cmd("CLUSTER");
        command.arg("INFO");
        let answers: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .filter_map(|node| node.try_cmd::<String>(&command))
            .collect();
        !answers.is_empty() && answers.iter().all(|info| info.contains("cluster_state:ok"))
    }

    /// Polls `done` every 50 ms until it holds.
    ///
    /// # Panics
    ///
    /// When it does not hold within 30 s; the message names `what`.
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + SETTLE_WITHIN;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {}",
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, to read their keys or run commands on each.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to stop, freeze or restart them.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The indexes (into [`nodes`](Self::nodes)) of the running nodes that
    /// are primaries serving slots, as the running nodes see it.
    pub fn primaries(&self) -> Vec<usize> {
        let running: Vec<_> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let Some(view) = running.iter().find_map(|node| {
            let mut command = redis::cmd("CLUSTER");
            command.arg("NODES");
            node.try_cmd::<String>(&command)
        }) else {
            return Vec::new();
        };
        let mut primaries: Vec<usize> = view
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let flags = fields.get(2)?;
                let serves = fields.len() > 8;
                if !flags.contains("master") || flags.contains("fail") || !serves {
                    return None;
                }
                let port: u16 = fields
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit_once(':')?
                    .1
                    .parse()
                    .ok()?;
                self.nodes.iter().position(|node| node.port() == port)
            })
            .collect();
        primaries.sort_unstable();
        primaries
    }

    /// The index of a running replica of the primary at `primary`.
    pub fn replica_of(&self, primary: usize) -> Option<usize> {
        let id: String = self.nodes[primary].cmd("CLUSTER", &[b"MYID"]);
        self.nodes.iter().position(|node| {
            if !node.is_running() {
                return false;
            }
            let mut command = redis::cmd("INFO");
            command.arg("replication");
            let Some(info) = node.try_cmd::<String>(&command) else {
                return false;
            };
            let mut nodes = redis::cmd("CLUSTER");
            nodes.arg("NODES");
            node.try_cmd::<String>(&nodes).is_some_and(|view| {
                info.contains("role:slave")
                    && view
                        .lines()
                        .any(|line| line.contains("myself") && line.contains(id.as_str()))
            })
        })
    }

    /// A running replica of the primary at `primary`, waited for: a primary
    /// demoted by a failover a moment ago turns replica only once it hears
    /// of the new epoch.
    ///
    /// # Panics
    ///
    /// When none shows up within 30 s.
    pub fn wait_for_replica_of(&self, primary: usize) -> usize {
        let mut found = None;
        self.wait_until("a replica of the primary", |c| {
            found = c.replica_of(primary);
            found.is_some()
        });
        found.expect("wait_until returns once a replica is found")
    }

    /// A manual failover (`CLUSTER FAILOVER`, what rolling upgrades do): the
    /// replica at `replica` becomes the primary of its shard. Waits until it
    /// is, and the cluster is up.
    ///
    /// # Panics
    ///
    /// When the failover does not complete within 30 s.
    pub fn failover_to(&self, replica: usize) {
        // A manual failover waits for the replica to catch up with its
        // primary; one whose link is not up yet (a primary demoted a moment
        // ago, still syncing) never does, and the failover lapses.
        self.wait_for_sync(replica);
        let deadline = Instant::now() + SETTLE_WITHIN;
        let mut failover = redis::cmd("CLUSTER");
        failover.arg("FAILOVER");
        loop {
            // A node promoted by an attempt that looked late answers ERR:
            // the loop below then finds it a primary.
            let _ = self.nodes[replica].try_cmd::<()>(&failover);
            let attempt = Instant::now() + Duration::from_secs(8);
            while Instant::now() < attempt {
                if self.primaries().contains(&replica) && self.is_up() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                Instant::now() < deadline,
                "the manual failover to {} did not happen: {}",
                self.nodes[replica].port(),
                self.describe()
            );
        }
    }

    /// Waits until the replica at `replica` is in sync with its primary
    /// (its replication link is up).
    ///
    /// # Panics
    ///
    /// When that does not happen within 30 s.
    pub fn wait_for_sync(&self, replica: usize) {
        self.wait_until("the replica to sync", |c| {
            let mut command = redis::cmd("INFO");
            command.arg("replication");
            c.nodes[replica]
                .try_cmd::<String>(&command)
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
    }

    /// Waits until the running primaries serve every slot again (after a
    /// primary was stopped, its replica is promoted).
    ///
    /// # Panics
    ///
    /// When that does not happen within 30 s.
    pub fn wait_for_promotion(&self, failed: usize) {
        self.wait_until("a replica to be promoted", |c| {
            !c.primaries().contains(&failed) && c.is_up()
        });
    }

    /// Waits, with Redis `WAIT`, until every replica of the primary at
    /// `primary` holds every write that primary took so far.
    ///
    /// `WAIT` covers the writes of its own connection: one write there, to
    /// a key of a slot this primary serves, then `WAIT` on the same
    /// connection covers every earlier write too, since a replica applies
    /// the replication stream in order.
    ///
    /// # Panics
    ///
    /// When the primary serves no slot or has no replica, or its replicas
    /// do not acknowledge within 30 s.
    pub fn wait_for_replicas(&self, primary: usize) {
        let node = &self.nodes[primary];
        let info: String = node.cmd("INFO", &[b"replication"]);
        let replicas: u64 = info
            .lines()
            .find_map(|line| line.strip_prefix("connected_slaves:"))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0);
        assert!(replicas > 0, "{} has no replica: {info}", node.port());
        // A primary serves about a third of the slots: a few tries.
        let marker = (0..1_000)
            .map(|i| format!("cachefw-tests:replicated:{i}"))
            .find(|key| self.owner_of(key) == primary)
            .unwrap_or_else(|| panic!("{} serves no slot", node.port()));
        let mut conn = node.connection();
        redis::cmd("SET")
            .arg(&marker)
            .arg(1)
            .query::<()>(&mut conn)
            .unwrap_or_else(|e| panic!("SET {marker} on {}: {e}", node.port()));
        let timeout_ms = SETTLE_WITHIN.as_millis().to_string();
        let acked: u64 = redis::cmd("WAIT")
            .arg(replicas)
            .arg(&timeout_ms)
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("WAIT on {}: {e}", node.port()));
        assert!(
            acked >= replicas,
            "{acked} of {replicas} replicas of {} acknowledged within {SETTLE_WITHIN:?}",
            node.port()
        );
    }

    /// The index of the primary serving `key`'s slot, as node `0` (or the
    /// first running node) sees it.
    ///
    /// # Panics
    ///
    /// When no running node answers.
    pub fn owner_of(&self, key: &str) -> usize {
        let node = self
            .nodes
            .iter()
            .find(|node| node.is_running())
            .unwrap_or_else(|| panic!("no node of the cluster runs"));
        let slot: i64 = node.cmd("CLUSTER", &[b"KEYSLOT", key.as_bytes()]);
        let view: String = node.cmd("CLUSTER", &[b"NODES"]);
        let owner = view.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            if !fields.get(2)?.contains("master") {
                return None;
            }
            let serves = fields.iter().skip(8).any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                matches!((start.parse::<i64>(), end.parse::<i64>()),
                    (Ok(start), Ok(end)) if (start..=end).contains(&slot))
            });
            let port: u16 = fields
                .get(1)?
                .split('@')
                .next()?
                .rsplit_once(':')?
                .1
                .parse()
                .ok()?;
            serves.then(|| self.nodes.iter().position(|node| node.port() == port))?
        });
        owner.unwrap_or_else(|| panic!("no primary serves slot {slot}: {view}"))
    }

    /// Moves `key`'s slot, with its keys, to the primary at `to`, the way
    /// `redis-cli --cluster reshard` does: `IMPORTING`/`MIGRATING`,
    /// `MIGRATE` of every key, then `SETSLOT … NODE` on every primary.
    ///
    /// # Panics
    ///
    /// When a step fails.
    pub fn migrate_slot_of(&self, key: &str, to: usize) {
        let from = self.owner_of(key);
        assert_ne!(from, to, "{key} is served by node {to} already");
        let slot: i64 = self.nodes[from].cmd("CLUSTER", &[b"KEYSLOT", key.as_bytes()]);
        let slot = slot.to_string();
        let from_id: String = self.nodes[from].cmd("CLUSTER", &[b"MYID"]);
        let to_id: String = self.nodes[to].cmd("CLUSTER", &[b"MYID"]);
        self.nodes[to].cmd::<()>(
            "CLUSTER",
            &[
                b"SETSLOT",
                slot.as_bytes(),
                b"IMPORTING",
                from_id.as_bytes(),
            ],
        );
        self.nodes[from].cmd::<()>(
            "CLUSTER",
            &[b"SETSLOT", slot.as_bytes(), b"MIGRATING", to_id.as_bytes()],
        );
        loop {
            let keys: Vec<String> =
                self.nodes[from].cmd("CLUSTER", &[b"GETKEYSINSLOT", slot.as_bytes(), b"100"]);
            if keys.is_empty() {
                break;
            }
            let port = self.nodes[to].port().to_string();
            let mut args: Vec<&[u8]> =
                vec![b"127.0.0.1", port.as_bytes(), b"", b"0", b"5000", b"KEYS"];
            args.extend(keys.iter().map(|key| key.as_bytes()));
            self.nodes[from].cmd::<()>("MIGRATE", &args);
        }
        for node in self.primaries() {
            self.nodes[node].cmd::<()>(
                "CLUSTER",
                &[b"SETSLOT", slot.as_bytes(), b"NODE", to_id.as_bytes()],
            );
        }
        self.wait_until("the slot to move", |c| c.owner_of(key) == to && c.is_up());
    }

    /// Every key of the cluster, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<_> = self
            .nodes
            .iter()
            .filter(|node| node.is_running() && node_is_primary(node))
            .flat_map(RedisServer::keys)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The value of `key`, read from the primary that serves its slot.
    pub fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        self.nodes
            .iter()
            .filter(|node| node.is_running() && node_is_primary(node))
            .find_map(|node| {
                let mut command = redis::cmd("GET");
                command.arg(key);
                // MOVED (another primary serves it) reads as `None`.
                node.try_cmd::<Option<Vec<u8>>>(&command)
            })
            .flatten()
    }

    fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let mut command = redis::cmd("CLUSTER");
                command.arg("NODES");
                format!(
                    "{}: {}",
                    node.port(),
                    if node.is_running() {
                        node.try_cmd::<String>(&command)
                            .unwrap_or_else(|| "no answer".to_owned())
                    } else {
                        "stopped".to_owned()
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn node_is_primary(node: &RedisServer) -> bool {
    node.try_cmd::<Vec<redis::Value>>(&redis::cmd("ROLE"))
        .and_then(|role| role.into_iter().next())
        .is_some_and(|role| matches!(role, redis::Value::BulkString(ref r) if r == b"master"))
}

fn cli() -> String {
    std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned())
}
