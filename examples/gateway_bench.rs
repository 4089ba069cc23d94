//! The origin and the edge gateway for `benches/gateway-vs-nginx.sh`: the cloud API (in
//! memory) with an all-time leaderboard of `--entries` players, and the Outpost gateway in
//! front of it. Prints `ready` on stdout once both listen; runs until killed.
//!
//! ```text
//! cargo run --release --example gateway_bench -- --origin 127.0.0.1:18080 --gateway 127.0.0.1:18081
//! ```
#![allow(
    clippy::print_stdout,
    reason = "the readiness line is the example's output"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use outpost_cloud::store::{BoardOp, BoardWrite, ResultWrite};
use outpost_cloud::{Cloud, CloudConfig};
use outpost_edge::gateway::limits::Rate;
use outpost_edge::gateway::{Gateway, GatewayConfig};

#[derive(Parser)]
struct Args {
    /// Where the cloud API listens.
    #[arg(long, default_value = "127.0.0.1:18080")]
    origin: SocketAddr,
    /// Where the gateway listens.
    #[arg(long, default_value = "127.0.0.1:18081")]
    gateway: SocketAddr,
    /// Players on the board.
    #[arg(long, default_value_t = 1000)]
    entries: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cloud = Arc::new(Cloud::in_memory(CloudConfig::dev(), None)?);
    for player in 1..=args.entries {
        let write = ResultWrite {
            match_id: player,
            mode: "arena".into(),
            ratings: Vec::new(),
            boards: vec![BoardWrite {
                board: "arena-best:all".into(),
                op: BoardOp::Best,
                player_id: player,
                value: ((player * 7919) % 1000) as f64,
                at_ms: player,
                expire_at: 0,
            }],
            players: Vec::new(),
            result_json: "{}".into(),
        };
        cloud
            .store
            .apply_result(&write)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let listener = tokio::net::TcpListener::bind(args.origin).await?;
    let origin_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(outpost_cloud::serve(
        listener,
        cloud,
        std::future::pending(),
    ));
    let mut config = GatewayConfig::new(&origin_url, "bench-edge", "local");
    config.listen = args.gateway;
    // One load generator on one address: limits out of the way, as nginx has none.
    let unlimited = Rate {
        per_second: u32::MAX / 2,
        burst: u32::MAX / 2,
    };
    config.default_limits = (unlimited, unlimited);
    let gateway = Gateway::start(config).await?;
    println!(
        "ready origin={origin_url} gateway=http://{}",
        gateway.addr()
    );
    std::future::pending::<()>().await;
    Ok(())
}
