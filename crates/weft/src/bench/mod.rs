//! `weft bench`: starts a real `weft serve` process on loopback and measures it from outside:
//! idle memory, durable posts per second, WebSocket fan-out latency, and the latency of
//! reading the last 50 messages of a room with a million messages and 20,000 members.
//!
//! One module per part: `seed` fills the store, `chat` measures posting, fan-out and reads,
//! `inbound` replays Matrix transactions, plain and realistic (`traffic`).

mod chat;
mod inbound;
mod seed;
mod traffic;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use weft_core::Id;

use crate::config::Config;

/// What to measure, and how hard.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Messages posted in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub posts: usize,
    /// Concurrent posting clients. Group commit turns concurrency into throughput: at 64 the
    /// server still has idle CPU (it waits on commits), at 256 it does not.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// WebSocket subscribers in the fan-out run.
    #[arg(long, default_value_t = 1_000)]
    pub subscribers: usize,
    /// Messages sent in the fan-out run.
    #[arg(long, default_value_t = 200)]
    pub fanout_messages: usize,
    /// Messages seeded into the big room for the read run.
    #[arg(long, default_value_t = 1_000_000)]
    pub seed_messages: usize,
    /// Members seeded into the big room.
    #[arg(long, default_value_t = 20_000)]
    pub seed_members: usize,
    /// Reads in the read run.
    #[arg(long, default_value_t = 2_000)]
    pub reads: usize,
    /// 100-event Matrix transactions replayed to the bridge (no homeserver in the loop);
    /// 0 skips the run.
    #[arg(long, default_value_t = 50)]
    pub matrix_transactions: usize,
    /// Only seed the big room (and the posting room) into the configured data folder or
    /// database, print the big room's address and exit, leaving the data for other
    /// benchmarks (such as the web app's peeking benchmark) to run against.
    #[arg(long)]
    pub seed_only: bool,
}

pub(super) struct Fixture {
    room_id: Id,
    big_room_id: Id,
    big_room_uri: String,
    tokens: Vec<String>,
}

pub async fn run(args: BenchArgs, config: &Config) -> anyhow::Result<()> {
    if args.seed_only {
        return seed_only(&args, config).await;
    }
    let scratch = ScratchDir::new()?;
    let dir = scratch.0.clone();
    let mut config = config.clone();
    if config.database_url.is_none() {
        config.data_dir = dir.clone();
    }
    let backend = if config.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("weft bench: {backend}, data in {}", dir.display());
    let started = Instant::now();
    let fixture = seed::seed(&args, &config).await?;
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());

    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&config.data_dir);
    if let Some(url) = &config.database_url {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd
        .env("WEFT_RATE_LIMIT_PER_MINUTE", "0")
        .env("WEFT_LOG", server_log("warn"))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting weft serve")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(pid) = child.id() {
        println!("idle RSS: {:.1} MB", rss_kb(pid)? as f64 / 1024.0);
    }

    let result = async {
        chat::posts(&args, &http, &base, &fixture, child.id()).await?;
        chat::fanout(&args, &http, &base, &fixture, port).await?;
        chat::reads(&args, &http, &base, &fixture).await?;
        if let Some(pid) = child.id() {
            println!("RSS after the runs: {:.1} MB", rss_kb(pid)? as f64 / 1024.0);
        }
        anyhow::Ok(())
    }
    .await;
    let _ = child.kill().await;
    match result {
        Ok(()) if args.matrix_transactions > 0 => {
            inbound::matrix_inbound(&args, &config, &dir).await
        }
        other => other,
    }
}

/// `--seed-only`: the seeding alone, into the data the configuration names.
async fn seed_only(args: &BenchArgs, config: &Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let fixture = seed::seed(args, config).await?;
    eprintln!(
        "seeded {} messages and {} members in {:.1} s",
        args.seed_messages,
        args.seed_members,
        started.elapsed().as_secs_f64()
    );
    // The one line on standard output: the room's address, for scripts to read.
    println!("{}", fixture.big_room_uri);
    Ok(())
}

/// The benchmark's scratch folder (the SQLite data, the Matrix registration with its
/// tokens), removed when the run ends, however it ends: on PostgreSQL it used to stay behind.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<ScratchDir> {
        let dir = std::env::temp_dir().join(format!("weft-bench-{}", Id::generate()));
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become ready")
}

/// CPU time (user + system, all threads) a process has used so far, in seconds: a figure
/// that, unlike throughput, hardly changes when other programs share the machine.
pub(super) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, in USER_HZ (100 on Linux).
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

pub(super) fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The log filter of a server the benchmark starts: `default`, or `WEFT_BENCH_SERVER_LOG`
/// when set (to see what the server does while measured, e.g.
/// `WEFT_BENCH_SERVER_LOG=error,sqlx::query=debug` lists every statement on stderr).
pub(super) fn server_log(default: &str) -> String {
    std::env::var("WEFT_BENCH_SERVER_LOG").unwrap_or_else(|_| default.to_string())
}

#[cfg(test)]
mod tests {
    use super::ScratchDir;

    #[test]
    fn the_scratch_folder_goes_away_with_what_it_holds() {
        let scratch = ScratchDir::new().expect("scratch folder");
        let dir = scratch.0.clone();
        std::fs::write(dir.join("registration.yaml"), "as_token: secret").expect("write");
        assert!(dir.is_dir());
        drop(scratch);
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
}
