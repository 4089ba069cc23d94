//! A private `redis-server` for tests: on a free loopback port, in a temporary folder,
//! stopped and deleted on drop; a clear failure if the binary is missing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private Redis server, stopped and deleted on drop.
pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    /// `redis://127.0.0.1:port/0`.
    pub url: String,
}

impl RedisServer {
    /// Starts one and waits (bounded) until it answers.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A replica of `primary`, answering.
    #[allow(dead_code, reason = "shared by test files that use a subset of it")]
    pub async fn replica_of(primary: &RedisServer) -> Self {
        let port = primary.port().to_string();
        Self::start_with(&["--replicaof", "127.0.0.1", &port]).await
    }

    /// Its port.
    #[allow(dead_code, reason = "shared by test files that use a subset of it")]
    pub fn port(&self) -> u16 {
        self.url
            .trim_start_matches("redis://127.0.0.1:")
            .trim_end_matches("/0")
            .parse()
            .expect("port")
    }

    /// Starts one with extra arguments and waits (bounded) until it answers.
    pub async fn start_with(extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir =
            std::env::temp_dir().join(format!("outpost-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp folder");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start redis-server ({err}): install it (Debian: apt-get install redis-server)")
            });
        let url = format!("redis://127.0.0.1:{port}/0");
        let server = Self { child, dir, url };
        // Wait, bounded, until it answers.
        let client = redis::Client::open(server.url.as_str()).expect("url");
        for _ in 0..100 {
            if let Ok(mut con) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {port} did not answer within 5 s");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
