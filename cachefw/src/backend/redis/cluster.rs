//! A Redis Cluster as cachefw routes it: the slot layout, read with
//! `CLUSTER SLOTS`, maps each slot onto a node, and every command goes
//! straight to its node's own connection, through that node's breaker and
//! bounded by that node's timeouts. Nothing is shared between nodes: a
//! primary that is killed, frozen or demoted costs only the calls to its
//! slots, and no layout read ever holds up a command.
//!
//! The layout is read again, in the background and at most every
//! [`REFRESH_SPACING`], as soon as a node answers `MOVED` (whose slot is
//! also moved at once), refuses (`READONLY`, `LOADING`), times out or
//! cannot be reached. A node that stays unreachable asks ever less often
//! (its own backoff, up to [`MAX_BACKOFF`]); one that answers starts over,
//! so a cluster that fails over twice in a minute is followed as promptly
//! the second time as the first. A read asks every known primary and seed
//! node at once and takes the layout most of them report.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::{Client, Value};

use super::connection::{Node, timed_out};
use crate::backend::breaker::Rules;
use crate::slots::{Range, SLOTS, host_of, node_settings, parse_slots};

/// The least time between two reads of the slot layout.
const REFRESH_SPACING: Duration = Duration::from_millis(100);
/// How long trouble on one node keeps it from asking for another read: at
/// first, and at most (doubling in between).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Redirects followed for one command (`MOVED` during a failover, then an
/// `ASK` during a migration, say).
pub(super) const MAX_REDIRECTS: usize = 3;
/// The wait before a command refused with `CLUSTERDOWN` is sent again
/// (at most `MAX_REDIRECTS` times).
pub(super) const CLUSTER_DOWN_RETRY: Duration = Duration::from_millis(20);

/// Which node serves each slot, as far as we know it.
pub(super) struct Topology {
    /// The nodes that serve slots (and, until the next read, nodes that
    /// served them before a `MOVED`).
    pub(super) nodes: Vec<Arc<Node>>,
    /// Per slot, an index into `nodes`.
    slots: Vec<u16>,
    /// The layout as read from the cluster; `None` before the first read.
    pub(super) layout: Option<Vec<Range>>,
}

impl Topology {
    pub(super) fn node(&self, slot: u16) -> &Arc<Node> {
        let index = self.slots.get(usize::from(slot)).copied().unwrap_or(0);
        self.nodes.get(usize::from(index)).unwrap_or(&self.nodes[0])
    }

    fn named(&self, name: &str) -> Option<&Arc<Node>> {
        self.nodes.iter().find(|node| node.name == name)
    }
}

/// A Redis Cluster.
pub(super) struct Cluster {
    /// A client of each seed node, `host:port` and client: their settings
    /// (credentials, TLS) reach every node, and when the cluster cannot be
    /// reached at start they tell a Redis that is down from settings that
    /// cannot work.
    pub(super) seeds: Vec<(String, Client)>,
    /// The seed nodes, asked for the layout with the known primaries.
    seed_nodes: Vec<Arc<Node>>,
    timeout: Duration,
    /// What the breakers of its nodes share.
    rules: Arc<Rules>,
    pub(super) topology: ArcSwap<Topology>,
    /// Whether a read of the layout runs, and whether another was asked
    /// for meanwhile.
    refreshing: AtomicBool,
    again: AtomicBool,
    clock: Instant,
}

/// Clears the refreshing flag however the refresh task ends; a task that
/// finished starts another if one was asked for after its last read (one
/// dropped unpolled, its runtime shutting down, does not).
struct Refreshing {
    cluster: Arc<Cluster>,
    finished: bool,
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.cluster.refreshing.store(false, Ordering::Release);
        if self.finished && self.cluster.again.load(Ordering::Acquire) {
            self.cluster.refresh();
        }
    }
}

impl Cluster {
    /// A cluster known by its seed nodes (at least one); each command is
    /// bounded by `timeout`. Until the layout is read, commands go to the
    /// first seed, which redirects them.
    pub(super) fn new(
        seeds: Vec<(String, Client)>,
        timeout: Duration,
        rules: Arc<Rules>,
    ) -> Option<Self> {
        let seed_nodes: Vec<Arc<Node>> = seeds
            .iter()
            .map(|(name, client)| Node::new(name.clone(), client.clone(), timeout, &rules))
            .collect();
        let first = seed_nodes.first()?.clone();
        Some(Self {
            seeds,
            seed_nodes,
            timeout,
            rules,
            topology: ArcSwap::from_pointee(Topology {
                nodes: vec![first],
                slots: vec![0; SLOTS],
                layout: None,
            }),
            refreshing: AtomicBool::new(false),
            again: AtomicBool::new(false),
            clock: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A new node at `name` (`host:port`), with the seeds' settings.
    fn make_node(&self, name: &str) -> Option<Arc<Node>> {
        let seed = self.seeds.first()?.1.get_connection_info();
        let client = Client::open(node_settings(seed, name)?).ok()?;
        Some(Node::new(
            name.to_owned(),
            client,
            self.timeout,
            &self.rules,
        ))
    }

    /// The node called `name`: a known one, or a new one (not kept in the
    /// layout) for commands routed by address.
    pub(super) fn node_named(&self, name: &str) -> Arc<Node> {
        let topology = self.topology.load();
        if let Some(node) = topology.named(name) {
            return node.clone();
        }
        self.seed_nodes
            .iter()
            .find(|node| node.name == name)
            .cloned()
            .or_else(|| self.make_node(name))
            .unwrap_or_else(|| topology.nodes[0].clone())
    }

    /// `to` (`host:port`, as a redirect names it) with the host of `from`
    /// when it names none.
    pub(super) fn redirect_name(to: &str, from: &Node) -> String {
        match to.rsplit_once(':') {
            Some((host, port)) if host.is_empty() || host == "?" => {
                format!("{}:{port}", host_of(&from.name))
            }
            _ => to.to_owned(),
        }
    }

    /// `MOVED slot to`: the slot is served by `to` from now on, and the rest
    /// of the layout is read again (a failover moves every slot of a
    /// primary). The node to send the command to.
    pub(super) fn moved(self: &Arc<Self>, slot: u16, to: &str) -> Arc<Node> {
        let mut target = None;
        self.topology.rcu(|topology| {
            let mut nodes = topology.nodes.clone();
            let index = match nodes.iter().position(|node| node.name == to) {
                Some(index) => index,
                None => {
                    let node = target
                        .clone()
                        .or_else(|| self.make_node(to))
                        .unwrap_or_else(|| topology.nodes[0].clone());
                    nodes.push(node);
                    nodes.len() - 1
                }
            };
            target = Some(nodes[index].clone());
            let mut slots = topology.slots.clone();
            if let Some(at) = slots.get_mut(usize::from(slot)) {
                *at = u16::try_from(index).unwrap_or(0);
            }
            Topology {
                nodes,
                slots,
                layout: topology.layout.clone(),
            }
        });
        self.refresh();
        target.unwrap_or_else(|| self.topology.load().node(slot).clone())
    }

    /// `node` failed, refused, or its breaker is open: the layout may have
    /// changed (a failover), so it is read again, unless this node asked
    /// for that a moment ago.
    pub(super) fn trouble(self: &Arc<Self>, node: &Node) {
        let now = self.now_ms();
        let quiet = node.quiet_until.load(Ordering::Acquire);
        if now < quiet {
            return;
        }
        let backoff = node
            .backoff
            .load(Ordering::Relaxed)
            .max(crate::clock::millis(FIRST_BACKOFF));
        if node
            .quiet_until
            .compare_exchange(quiet, now + backoff, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        node.backoff.store(
            (backoff * 2).min(crate::clock::millis(MAX_BACKOFF)),
            Ordering::Relaxed,
        );
        self.refresh();
    }

    /// `node` answered: its next trouble asks for a read at once.
    pub(super) fn answered(node: &Node) {
        if node.backoff.load(Ordering::Relaxed) != 0 {
            node.backoff.store(0, Ordering::Relaxed);
            node.quiet_until.store(0, Ordering::Release);
        }
    }

    /// Reads the layout again in the background (one read at a time; a
    /// request during a read makes another follow it).
    pub(super) fn refresh(self: &Arc<Self>) {
        self.again.store(true, Ordering::Release);
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut flag = Refreshing {
            cluster: self.clone(),
            finished: false,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.again.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(async move {
            while flag.cluster.again.swap(false, Ordering::AcqRel) {
                let started = tokio::time::Instant::now();
                flag.cluster.read_layout().await;
                tokio::time::sleep_until(started + REFRESH_SPACING).await;
            }
            flag.finished = true;
            drop(flag);
        });
    }

    /// Asks every known primary and seed node for the layout at once, and
    /// takes the one most of them report; `true` if one was read.
    pub(super) async fn read_layout(&self) -> bool {
        let topology = self.topology.load_full();
        let mut asked: Vec<Arc<Node>> = topology.nodes.clone();
        for seed in &self.seed_nodes {
            if !asked.iter().any(|node| node.name == seed.name) {
                asked.push(seed.clone());
            }
        }
        let reads = asked.iter().map(|node| async move {
            let read = async {
                let (mut conn, id) = node.connection(self.timeout).await?;
                let reply = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<Value>(&mut conn)
                    .await;
                if reply.is_err() {
                    node.discard(id);
                }
                reply
            };
            let reply = tokio::time::timeout(self.timeout, read)
                .await
                .unwrap_or_else(|_| Err(timed_out()))
                .ok()?;
            parse_slots(reply, host_of(&node.name))
        });
        let mut views: HashMap<Vec<Range>, usize> = HashMap::new();
        for view in futures_util::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
        {
            if !view.is_empty() {
                *views.entry(view).or_default() += 1;
            }
        }
        let Some((layout, _)) = views.into_iter().max_by_key(|(_, votes)| *votes) else {
            return false;
        };
        self.apply(layout);
        true
    }

    /// Maps `layout` onto nodes, keeping the node (connection, breaker) of
    /// each name that served slots before; a node new to serving starts
    /// afresh.
    fn apply(&self, layout: Vec<Range>) {
        let old = self.topology.load();
        if old.layout.as_ref() == Some(&layout) && old.nodes.len() == distinct(&layout) {
            return;
        }
        let mut nodes: Vec<Arc<Node>> = Vec::new();
        let mut slots = vec![0u16; SLOTS];
        for (start, end, name) in &layout {
            let index = match nodes.iter().position(|node| node.name == *name) {
                Some(index) => index,
                None => {
                    let Some(node) = old.named(name).cloned().or_else(|| self.make_node(name))
                    else {
                        continue;
                    };
                    nodes.push(node);
                    nodes.len() - 1
                }
            };
            if let Some(range) = slots.get_mut(*start..=*end) {
                range.fill(u16::try_from(index).unwrap_or(0));
            }
        }
        if nodes.is_empty() {
            return;
        }
        tracing::debug!(
            primaries = nodes.len(),
            "cachefw: Redis Cluster layout read"
        );
        self.topology.store(Arc::new(Topology {
            nodes,
            slots,
            layout: Some(layout),
        }));
    }
}

/// How many primaries a layout names.
fn distinct(layout: &[Range]) -> usize {
    let mut names: Vec<&str> = layout.iter().map(|(_, _, name)| name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}
