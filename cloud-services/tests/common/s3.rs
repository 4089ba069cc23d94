//! A private S3-compatible server for tests: moto's server mode (`pip install
//! 'moto[server]'`) on a free loopback port, stopped on drop; a clear failure if
//! `moto_server` is missing.

#[path = "log.rs"]
mod log;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use self::log::Log;

/// A moto server, stopped on drop.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts one and waits (bounded) until it says it is serving.
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start moto_server ({err}): install it (pip install 'moto[server]')")
            });
        // It logs ` * Running on http://…` on stderr once it listens.
        let mut log = Log::follow(
            child.stderr.take().expect("piped"),
            format!("moto_server on port {port}"),
        );
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        log.line("Running on", Duration::from_secs(20)).await;
        server
    }

    /// An S3 builder for this server (path-style requests, plain HTTP, test keys).
    pub fn builder(&self) -> object_store::aws::AmazonS3Builder {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_virtual_hosted_style_request(false)
    }

    /// Creates a bucket (moto takes an unsigned `PUT /bucket`).
    pub async fn create_bucket(&self, name: &str) {
        let status = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("moto answers")
            .status();
        assert!(status.is_success(), "creating bucket {name}: {status}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
