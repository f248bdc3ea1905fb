//! `sophos-central-sim`: the simulator as a command (see the library's documentation).

use clap::Parser;
use sophos_central_sim::Args;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!("sophos-central-sim: listens on loopback only");
        std::process::exit(2);
    }
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("{base}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    sophos_central_sim::serve(listener, args, std::future::pending()).await
}
