//! `braid`: tools for RLPx nodes and bitcoin peers, built on braid's own crates.
//!
//! ```text
//! braid key generate [--out FILE]          a node key (hex), and its id
//! braid key inspect FILE [--addr IP:PORT]  the key's node id and enode
//! braid enode parse ENODE                  the parts of an enode URL
//! braid enode to-enr ENODE --key FILE      the node's signed record (ENR)
//! braid enode from-enr ENR                 a record's enode, seq and capabilities
//! braid rlpx ping ENODE [--legacy]         handshake, Hello, one ping, disconnect 0x08
//! braid rlpx test ENODE [--run PATTERN]    the conformance suite (see README, "Tools")
//! braid discv4 ping|resolve NODE           bond and ping; fetch the node's record
//! braid discv4 crawl --bootnodes NODE…     walk the network, list what answers
//! braid discv4 test NODE                   the discovery v4 conformance cases
//! braid btc ping HOST:PORT [--network N]   bitcoin version handshake and a ping
//! ```
//!
//! Every command takes `--json` (machine-readable output on stdout). Errors are one line
//! on stderr and a non-zero exit: 1 for a failed command, 2 for bad arguments, 3 when a
//! conformance run had failures.

mod btc;
mod discv4;
mod enode;
mod key;
mod output;
mod rlpx;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use p2p::node::Enode;
use protocols::bitcoin::wire::Network;

use output::Out;

#[derive(Parser)]
#[command(
    name = "braid",
    version,
    about = "Tools for RLPx nodes and bitcoin peers"
)]
struct Cli {
    /// Machine-readable output (JSON) on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Node keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Enode URLs.
    #[command(subcommand)]
    Enode(EnodeCmd),
    /// RLPx probes and the conformance suite.
    #[command(subcommand)]
    Rlpx(RlpxCmd),
    /// Discovery v4 probes.
    #[command(subcommand)]
    Discv4(Discv4Cmd),
    /// Bitcoin peers.
    #[command(subcommand)]
    Btc(BtcCmd),
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Generate a node key; print it, or write it to FILE (mode 0600, never overwritten).
    Generate {
        /// Write the key here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show the node id (and enode) of a key file.
    Inspect {
        /// The key file (64 hex characters).
        file: PathBuf,
        /// Print the enode for this address too.
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
}

#[derive(Subcommand)]
enum EnodeCmd {
    /// Show the parts of an enode URL.
    Parse {
        /// `enode://<128 hex>@<ip>:<port>[?discport=<port>]`
        enode: String,
    },
    /// Sign a node record (ENR) for an enode with the node's key file.
    ToEnr {
        /// The node's enode URL.
        enode: String,
        /// The node's key file (a record is only valid signed by its node).
        #[arg(long)]
        key: PathBuf,
        /// The record's sequence number.
        #[arg(long, default_value_t = 1)]
        seq: u64,
    },
    /// Verify a node record (`enr:…`) and show the enode and capabilities it holds.
    FromEnr {
        /// The record's text form.
        enr: String,
    },
}

#[derive(Subcommand)]
enum RlpxCmd {
    /// Handshake, print the remote's Hello, ping once, disconnect (0x08).
    Ping {
        /// The node to probe.
        enode: Enode,
        /// Send a pre-EIP-8 (legacy) auth.
        #[arg(long)]
        legacy: bool,
        /// Deadline of each step, e.g. 5s, 500ms.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Run the conformance suite against a node.
    Test {
        /// The node under test.
        enode: Enode,
        /// Only cases whose name contains this (e.g. `handshake/`, `frame`).
        #[arg(long)]
        run: Option<String>,
        /// Deadline of each step.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// How long the idle case waits for the node's own ping (geth and braid ping
        /// every 15 s).
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        idle_wait: Duration,
    },
}

#[derive(Subcommand)]
enum Discv4Cmd {
    /// Bond with a node over discovery v4 and report the ping's round trip.
    Ping {
        /// The node (`enode://…` or `enr:…`).
        node: String,
        /// How long to wait for the pong.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Fetch a node's current record (EIP-868).
    Resolve {
        /// The node (`enode://…` or `enr:…`).
        node: String,
        /// How long to wait for the record.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Walk the network from bootnodes with random lookups; list every node found.
    Crawl {
        /// Where to start (repeatable; `enode://…` or `enr:…`).
        #[arg(long, required = true)]
        bootnodes: Vec<String>,
        /// How long to crawl.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
        /// Also write the nodes to this JSON file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the discovery v4 conformance cases against a node.
    Test {
        /// The node under test (`enode://…` or `enr:…`).
        node: String,
        /// How long each case waits for replies.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        wait: Duration,
    },
}

#[derive(Subcommand)]
enum BtcCmd {
    /// Version handshake and a ping; prints version, services, user agent, height, RTT.
    Ping {
        /// The bitcoin node.
        addr: SocketAddr,
        /// Which network's magic to speak.
        #[arg(long, value_enum, default_value_t = NetworkArg::Mainnet)]
        network: NetworkArg,
        /// Deadline of each step.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum NetworkArg {
    Mainnet,
    Testnet3,
    Testnet4,
    Signet,
    Regtest,
}

impl From<NetworkArg> for Network {
    fn from(n: NetworkArg) -> Network {
        match n {
            NetworkArg::Mainnet => Network::Mainnet,
            NetworkArg::Testnet3 => Network::Testnet3,
            NetworkArg::Testnet4 => Network::Testnet4,
            NetworkArg::Signet => Network::Signet,
            NetworkArg::Regtest => Network::Regtest,
        }
    }
}

/// `5s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (e.g. 5s, 500ms, 2m)");
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

/// Bad arguments: the one `error:` line clap puts first, exit 2 (help and version as usual).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad arguments");
    eprintln!("error: {}", first.strip_prefix("error: ").unwrap_or(first));
    ExitCode::from(2)
}

/// A failed command: exactly one line on stderr, exit 1.
fn fatal(e: impl std::fmt::Display) -> ExitCode {
    let text = e.to_string();
    eprintln!("error: {}", text.lines().collect::<Vec<_>>().join("; "));
    ExitCode::FAILURE
}

fn init_logging() {
    use std::io::IsTerminal;
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fatal(format!("cannot start the runtime: {e}")),
    };
    let out = Out::new(cli.json);
    runtime.block_on(run(cli.command, out))
}

async fn run(command: Command, out: Out) -> ExitCode {
    let result: Result<ExitCode, String> = match command {
        Command::Key(KeyCmd::Generate { out: file }) => key::generate(file.as_deref(), out)
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Command::Key(KeyCmd::Inspect { file, addr }) => key::inspect(&file, addr, out)
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Command::Enode(EnodeCmd::Parse { enode }) => enode::parse(&enode, out)
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Command::Enode(EnodeCmd::ToEnr { enode, key, seq }) => {
            enode::to_enr(&enode, &key, seq, out)
                .map(|_| ExitCode::SUCCESS)
                .map_err(|e| e.to_string())
        }
        Command::Enode(EnodeCmd::FromEnr { enr }) => enode::from_enr(&enr, out)
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Command::Rlpx(RlpxCmd::Ping {
            enode,
            legacy,
            timeout,
        }) => rlpx::ping(&enode, legacy, timeout, out)
            .await
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Command::Rlpx(RlpxCmd::Test {
            enode,
            run,
            timeout,
            idle_wait,
        }) => match rlpx::test(&enode, run.as_deref(), timeout, idle_wait, out).await {
            Ok(0) => Ok(ExitCode::SUCCESS),
            Ok(_) => Ok(ExitCode::from(3)),
            Err(e) => Err(format!("cannot reach the node under test: {e}")),
        },
        Command::Discv4(Discv4Cmd::Ping { node, timeout }) => discv4::ping(&node, timeout, out)
            .await
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Command::Discv4(Discv4Cmd::Resolve { node, timeout }) => {
            discv4::resolve(&node, timeout, out)
                .await
                .map(|_| ExitCode::SUCCESS)
                .map_err(|e| e.to_string())
        }
        Command::Discv4(Discv4Cmd::Crawl {
            bootnodes,
            timeout,
            out: file,
        }) => discv4::crawl(&bootnodes, timeout, file.as_deref(), out)
            .await
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Command::Discv4(Discv4Cmd::Test { node, wait }) => {
            match discv4::test(&node, wait, out).await {
                Ok(0) => Ok(ExitCode::SUCCESS),
                Ok(_) => Ok(ExitCode::from(3)),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Btc(BtcCmd::Ping {
            addr,
            network,
            timeout,
        }) => btc::ping(addr, network.into(), timeout, out)
            .await
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
    };
    result.unwrap_or_else(fatal)
}
