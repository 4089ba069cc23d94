//! # outpost-edge
//!
//! The edge server: it hosts authoritative matches close to players. A QUIC endpoint
//! (quinn) admits players with connect tokens it verifies offline; dedicated sim worker
//! threads tick each match on a fixed clock and send every player a snapshot per tick;
//! an admin HTTP server exports Prometheus metrics and health.
//!
//! Threads: a tokio runtime owns the network (QUIC, HTTP). Simulation runs on its own
//! threads, never as tokio tasks; the two meet through bounded channels, so a slow
//! client can never stall a tick.
//!
//! What it is not: the game rules (those are `outpost-sim`) or the wire format
//! (`outpost-protocol`). This crate is the shell around them.
//!
//! ```no_run
//! use outpost_edge::{Edge, EdgeConfig};
//!
//! # async fn run(public_key: [u8; 32], modes: outpost_sim::Modes) -> anyhow::Result<()> {
//! let mut config = EdgeConfig::new("edge-local-1", public_key);
//! config.modes = modes; // the game modes it hosts
//! let edge = Edge::start(config).await?;
//! println!("QUIC on {}, pin {}", edge.quic_addr(), outpost_edge::hex(&edge.cert_fingerprint()));
//! tokio::signal::ctrl_c().await?;
//! edge.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod agones;
pub mod cloud_link;
pub mod config;
mod control_stream;
mod directory;
pub mod gateway;
pub mod handshake;
pub mod host;
mod http;
pub mod metrics;
pub mod outbox;
mod server;
mod session;
pub mod snapshot;
pub mod tls;
mod worker;

pub use config::{ConfigError, EdgeConfig, TlsSource};
pub use metrics::EdgeMetrics;
pub use server::{Edge, EdgeStatus, TickStats, hex};
pub use session::close_code;
pub use worker::{InputMailbox, MAILBOX_FRAMES};
