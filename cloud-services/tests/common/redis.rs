//! Private `redis-server`s for tests: on free loopback ports, in temporary folders,
//! stopped and deleted on drop; a clear failure if the binaries are missing. One server,
//! a replica of one, or a Redis Cluster of three primaries with a replica each.
#![allow(dead_code, reason = "shared by test files that use a subset of it")]

#[path = "log.rs"]
mod log;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use self::log::{Ended, Log};

/// How long a server may take to start, a cluster to form or a replica to sync.
const READY_WITHIN: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// In [`RedisServer::start_with`]'s arguments: a free port of its own.
pub const FREE_PORT: &str = "<free port>";

/// A private Redis server, stopped and deleted on drop.
pub struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    extra: Vec<String>,
    /// Its log (stdout), from its latest start.
    pub log: Log,
    /// `redis://127.0.0.1:port/0`.
    pub url: String,
}

impl RedisServer {
    /// Starts one and waits (bounded) until it is ready.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A replica of `primary`, ready (not necessarily synced).
    pub async fn replica_of(primary: &RedisServer) -> Self {
        let port = primary.port().to_string();
        Self::start_with(&["--replicaof", "127.0.0.1", &port]).await
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts one with extra arguments and waits (bounded) until it says it accepts
    /// connections.
    /// An argument [`FREE_PORT`] becomes a free port of its own (a cluster node's bus).
    /// A port found free can be taken before the server binds it (other tests start
    /// servers at the same time): a server that exits before it is ready is started
    /// again on fresh ports, a few times.
    pub async fn start_with(extra: &[&str]) -> Self {
        const ATTEMPTS: usize = 4;
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("outpost-redis-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp folder");
            let extra: Vec<String> = extra
                .iter()
                .map(|a| match *a {
                    FREE_PORT => free_port().to_string(),
                    a => a.to_owned(),
                })
                .collect();
            let (child, log) = Self::spawn(port, &dir, &extra);
            let mut server = Self {
                child: Some(child),
                dir,
                port,
                extra,
                log,
                url: format!("redis://127.0.0.1:{port}/0"),
            };
            match server
                .log
                .wait_for("Ready to accept connections", READY_WITHIN)
                .await
            {
                Ok(_) => return server,
                Err(Ended::Exited) if attempt < ATTEMPTS => {}
                Err(_) => {
                    server
                        .log
                        .line("Ready to accept connections", READY_WITHIN)
                        .await;
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(port: u16, dir: &PathBuf, extra: &[String]) -> (Child, Log) {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start redis-server ({err}): install it (Debian: apt-get install redis-server)")
            });
        let log = Log::follow(
            child.stdout.take().expect("piped"),
            format!("redis-server on port {port}"),
        );
        (child, log)
    }

    /// Kills it (SIGKILL: a crash, nothing flushed).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and folder (a cluster node keeps its identity
    /// from `nodes.conf`), ready.
    pub async fn restart(&mut self) {
        self.kill();
        let (child, log) = Self::spawn(self.port, &self.dir, &self.extra);
        self.child = Some(child);
        self.log = log;
        self.log
            .line("Ready to accept connections", READY_WITHIN)
            .await;
    }

    /// A plain (not cluster-aware) connection to this one server.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connects")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// Node id.
    pub id: String,
    /// Its port.
    pub port: u16,
    /// A primary (else a replica).
    pub primary: bool,
    /// A replica's primary's id.
    pub primary_id: Option<String>,
    /// Slot ranges a primary serves, inclusive.
    pub slots: Vec<(u16, u16)>,
}

/// A Redis Cluster of three primaries with one replica each, formed with
/// `redis-cli --cluster create`; a node that misses 1 s of pings is failed over.
pub struct RedisCluster {
    /// The six servers.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six servers, forms the cluster, and waits until every node says the
    /// cluster is ok and every replica has synced.
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..6 {
            // The cluster bus gets a free port of its own (by default it is the port +
            // 10000, which need not be free, nor below 65536).
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-port",
                    FREE_PORT,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // A primary syncs a (re)joining replica at once instead of waiting 5 s
                    // for others to sync with it.
                    "--repl-diskless-sync-delay",
                    "0",
                ])
                .await,
            );
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let created = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addresses)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
        })
        .await
        .expect("task")
        .unwrap_or_else(|err| {
            panic!("cannot run redis-cli ({err}): install it (Debian: apt-get install redis-tools)")
        });
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let mut cluster = Self { nodes };
        let replicas: Vec<u16> = cluster
            .describe()
            .await
            .into_iter()
            .filter(|n| !n.primary)
            .map(|n| n.port)
            .collect();
        assert_eq!(replicas.len(), 3, "three replicas");
        for node in &mut cluster.nodes {
            node.log
                .line("Cluster state changed: ok", READY_WITHIN)
                .await;
            if replicas.contains(&node.port()) {
                node.log
                    .line(
                        "MASTER <-> REPLICA sync: Finished with success",
                        READY_WITHIN,
                    )
                    .await;
            }
        }
        cluster
    }

    /// `redis+cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Each live node as it sees itself (its own line of `CLUSTER NODES`: authoritative
    /// for its role, its primary and its slots, with no gossip to wait for).
    pub async fn describe(&self) -> Vec<ClusterNode> {
        let mut described = Vec::new();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let text: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut node.connection().await)
                .await
                .expect("CLUSTER NODES");
            let line = text
                .lines()
                .find(|l| l.contains("myself"))
                .expect("a node knows itself");
            let fields: Vec<&str> = line.split_whitespace().collect();
            let primary = fields[2].contains("master");
            let slots = fields
                .iter()
                .skip(8)
                .filter(|f| !f.starts_with('['))
                .filter_map(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            described.push(ClusterNode {
                id: fields[0].to_owned(),
                port: node.port(),
                primary,
                primary_id: (!primary).then(|| fields[3].to_owned()),
                slots,
            });
        }
        described
    }

    /// Index in [`Self::nodes`] of the primary that serves `key`, and of its replica.
    pub async fn primary_and_replica_of(&self, key: &str) -> (usize, usize) {
        let described = self.describe().await;
        let live = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut live.connection().await)
            .await
            .expect("CLUSTER KEYSLOT");
        let primary = described
            .iter()
            .find(|n| n.primary && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .expect("a primary serves every slot");
        let replica = described
            .iter()
            .find(|n| n.primary_id.as_deref() == Some(primary.id.as_str()))
            .expect("every primary has a replica");
        let index = |port: u16| {
            self.nodes
                .iter()
                .position(|n| n.port() == port)
                .expect("one of ours")
        };
        (index(primary.port), index(replica.port))
    }
}
