//! `weft bench`: starts a real `weft serve` process on loopback and measures it from outside:
//! idle memory, durable posts per second, WebSocket fan-out latency, and the latency of
//! reading the last 50 messages of a room with a million messages and 20,000 members.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use weft_chat::{Actor, Chat, NewRoom, NewUser};
use weft_core::{Author, Id, Membership, Role, RoomKind, User};
use weft_store::NewMessage;

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

struct Fixture {
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
    let fixture = seed(&args, &config).await?;
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
        .env("WEFT_LOG", "warn")
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
        posts(&args, &http, &base, &fixture, child.id()).await?;
        fanout(&args, &http, &base, &fixture, port).await?;
        reads(&args, &http, &base, &fixture).await?;
        if let Some(pid) = child.id() {
            println!("RSS after the runs: {:.1} MB", rss_kb(pid)? as f64 / 1024.0);
        }
        anyhow::Ok(())
    }
    .await;
    let _ = child.kill().await;
    match result {
        Ok(()) if args.matrix_transactions > 0 => matrix_inbound(&args, &config, &dir).await,
        other => other,
    }
}

/// `--seed-only`: the seeding alone, into the data the configuration names.
async fn seed_only(args: &BenchArgs, config: &Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let fixture = seed(args, config).await?;
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

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
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
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
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

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// Users, tokens, a room for posting, and the big room (seeded straight into the store).
async fn seed(args: &BenchArgs, config: &Config) -> anyhow::Result<Fixture> {
    let (store, chat): (weft_store::Store, Chat) = crate::open_parts(config).await?;
    let system = Actor::system();
    let group = chat
        .create_group(&system, &format!("bench{}", Id::generate()), None)
        .await?;
    let room = chat
        .create_room(
            &system,
            NewRoom {
                group_id: group.id,
                name: "load".into(),
                topic: String::new(),
                kind: RoomKind::Public,
            },
        )
        .await?;
    let big = chat
        .create_room(
            &system,
            NewRoom {
                group_id: group.id,
                name: "big".into(),
                topic: String::new(),
                kind: RoomKind::Public,
            },
        )
        .await?;
    let mut tokens = Vec::new();
    let posters = args.concurrency.max(1);
    for i in 0..posters {
        let user = chat
            .create_user(NewUser {
                username: format!("poster{i}-{}", Id::generate()),
                display_name: None,
                password: None,
                site_admin: false,
            })
            .await?;
        let actor = Actor::user(user.clone());
        chat.join(&actor, room.id).await?;
        chat.join(&actor, big.id).await?;
        tokens.push(chat.create_token(user.id, "bench", false).await?.1);
    }
    // The big room: members and messages written in large transactions.
    let members_per_job = 2_000;
    let mut created = 0;
    while created < args.seed_members {
        let n = members_per_job.min(args.seed_members - created);
        let room_id = big.id;
        store
            .write(move |tx| {
                Box::pin(async move {
                    for _ in 0..n {
                        let id = Id::generate();
                        let user = User {
                            id,
                            username: format!("m{id}"),
                            display_name: format!("Member {id}"),
                            avatar_url: None,
                            site_admin: false,
                            created_at: weft_core::now_millis(),
                        };
                        tx.insert_user(&user, None).await?;
                        let m = Membership {
                            room_id,
                            user_id: id,
                            role: Role::Member,
                            last_read_seq: 0,
                            favourite: false,
                            joined_at: 0,
                        };
                        tx.insert_membership(&m).await?;
                    }
                    Ok(())
                })
            })
            .await?;
        created += n;
    }
    let author = chat
        .views()
        .members(big.id, "", 1, 0)
        .await?
        .first()
        .map(|(u, _)| u.id)
        .context("no member")?;
    let per_job = 5_000;
    let mut written = 0;
    while written < args.seed_messages {
        let n = per_job.min(args.seed_messages - written);
        let room_id = big.id;
        let base = written;
        store
            .write(move |tx| {
                Box::pin(async move {
                    for i in 0..n {
                        let text = format!(
                            "seeded message number {} with a little **markdown**",
                            base + i
                        );
                        let m = NewMessage {
                            id: Id::generate(),
                            room_id,
                            author: Author::User(author),
                            html: format!("<p>{text}</p>"),
                            text,
                            status: false,
                            parent_id: None,
                            sent: weft_core::now_millis(),
                            mentions: Vec::new(),
                            issues: Vec::new(),
                            urls: Vec::new(),
                            attachments: Vec::new(),
                            external_ref: None,
                        };
                        tx.insert_message(&m).await?;
                    }
                    Ok(())
                })
            })
            .await?;
        written += n;
    }
    // A server that grew to this size has statistics; a bulk load has none until analysed.
    chat.refresh_statistics().await?;
    chat.close().await;
    Ok(Fixture {
        room_id: room.id,
        big_room_id: big.id,
        big_room_uri: big.uri.clone().context("the big room has no URI")?,
        tokens,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn posts(
    args: &BenchArgs,
    http: &reqwest::Client,
    base: &str,
    f: &Fixture,
    server: Option<u32>,
) -> anyhow::Result<()> {
    let per_client = args.posts / f.tokens.len();
    let cpu_before = server.map(cpu_seconds).transpose()?;
    let own_cpu_before = cpu_seconds(std::process::id())?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in &f.tokens {
        let (http, url, token) = (
            http.clone(),
            format!("{base}/v1/rooms/{}/chatMessages", f.room_id),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                // The body is written by hand: the load generator shares the machine's cores
                // with the server, so it should spend as little as it can.
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(format!(
                        r#"{{"text":"load message {i} with `code` and :tada:"}}"#
                    ))
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("post failed: {}", response.status());
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let total = per_client * f.tokens.len();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "posts: {total} durable posts in {secs:.2} s = {:.0} posts/s ({} concurrent clients)",
        total as f64 / secs,
        f.tokens.len()
    );
    if let (Some(pid), Some(before)) = (server, cpu_before) {
        let used = cpu_seconds(pid)? - before;
        let own = cpu_seconds(std::process::id())? - own_cpu_before;
        println!(
            "posts: the server used {:.0} µs of CPU per post ({:.2} cores busy), the load generator {:.0} µs ({:.2} cores)",
            used * 1e6 / total as f64,
            used / secs,
            own * 1e6 / total as f64,
            own / secs
        );
    }
    Ok(())
}

async fn fanout(
    args: &BenchArgs,
    http: &reqwest::Client,
    base: &str,
    f: &Fixture,
    port: u16,
) -> anyhow::Result<()> {
    let clock = Arc::new(Instant::now());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let mut ready = Vec::new();
    for _ in 0..args.subscribers {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/ws")).await?;
        ws.send(tokio_tungstenite::tungstenite::Message::Text(
            serde_json::json!({ "type": "subscribe", "roomId": f.room_id })
                .to_string()
                .into(),
        ))
        .await?;
        let (clock, tx) = (clock.clone(), tx.clone());
        let expected = args.fanout_messages;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut seen = 0;
            while let Some(Ok(msg)) = ws.next().await {
                let Ok(text) = msg.into_text() else { continue };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if value["type"] == "subscribed" {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(());
                    }
                    continue;
                }
                if value["resource"] != "chatMessages" || value["operation"] != "create" {
                    continue;
                }
                let sent: Option<f64> = value["model"]["text"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("fanout "))
                    .and_then(|t| t.parse().ok());
                if let Some(sent) = sent {
                    let _ = tx.send(clock.elapsed().as_secs_f64() * 1000.0 - sent);
                    seen += 1;
                    if seen == expected {
                        return;
                    }
                }
            }
        });
    }
    for r in ready {
        r.await.context("a subscriber did not subscribe")?;
    }
    drop(tx);
    let url = format!("{base}/v1/rooms/{}/chatMessages", f.room_id);
    for _ in 0..args.fanout_messages {
        let sent_ms = clock.elapsed().as_secs_f64() * 1000.0;
        http.post(&url)
            .bearer_auth(&f.tokens[0])
            .json(&serde_json::json!({ "text": format!("fanout {sent_ms:.3}") }))
            .send()
            .await?
            .error_for_status()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            got = rx.recv() => match got { Some(ms) => latencies.push(ms), None => break },
            _ = &mut deadline => break,
        }
    }
    latencies.sort_by(f64::total_cmp);
    let expected = args.subscribers * args.fanout_messages;
    println!(
        "fan-out: {} of {expected} deliveries to {} WebSocket subscribers; post→receive p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        args.subscribers,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}

async fn reads(
    args: &BenchArgs,
    http: &reqwest::Client,
    base: &str,
    f: &Fixture,
) -> anyhow::Result<()> {
    let url = format!("{base}/v1/rooms/{}/chatMessages?limit=50", f.big_room_id);
    let mut latencies = Vec::with_capacity(args.reads);
    for _ in 0..args.reads {
        let started = Instant::now();
        let response = http
            .get(&url)
            .bearer_auth(&f.tokens[0])
            .send()
            .await?
            .error_for_status()?;
        let body = response.bytes().await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if body.len() < 100 {
            bail!("read returned too little");
        }
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "reads: last 50 messages of a room with {} messages and {} members, {} reads: p50 {:.2} ms, p99 {:.2} ms",
        args.seed_messages,
        args.seed_members + args.concurrency,
        args.reads,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}

/// Replays recorded-shape AS transactions (100 `m.room.message` events each, one in flight,
/// as a homeserver sends them) to a weft whose bridge points at no homeserver, and checks
/// that a replayed transaction adds nothing.
async fn matrix_inbound(
    args: &BenchArgs,
    config: &Config,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let port = free_port()?;
    let registration_path = dir.join("registration.yaml");
    // Port 9 (discard) is closed on loopback: homeserver calls fail at once.
    let homeserver = "http://127.0.0.1:9";
    let (yaml, section) = weft_matrix::generate_registration(
        "bench.test",
        homeserver,
        &format!("http://127.0.0.1:{port}"),
        &registration_path,
    )?;
    std::fs::write(&registration_path, yaml)?;
    let hs_token = weft_matrix::config::read_registration(&registration_path)?.hs_token;
    let config_path = dir.join("weft-matrix.toml");
    std::fs::write(&config_path, section)?;

    let matrix_room = "!bench:bench.test";
    let (store, chat): (weft_store::Store, Chat) = crate::open_parts(config).await?;
    let system = Actor::system();
    let group = chat
        .create_group(&system, &format!("mx{}", Id::generate()), None)
        .await?;
    let room = chat
        .create_room(
            &system,
            NewRoom {
                group_id: group.id,
                name: "bridged".into(),
                topic: String::new(),
                kind: RoomKind::Public,
            },
        )
        .await?;
    let mapped = weft_matrix::MatrixRoom {
        room_id: room.id,
        matrix_room_id: matrix_room.into(),
        alias: "#bench:bench.test".into(),
        open: true,
    };
    weft_matrix::MatrixTables::open(store)
        .await?
        .insert_room(mapped)
        .await?;
    chat.close().await;

    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--config")
        .arg(&config_path)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    cmd.arg("--data-dir").arg(&config.data_dir);
    if let Some(url) = &config.database_url {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd
        .env("WEFT_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await?;

    let senders = 50;
    let put = |txn: String, events: Vec<serde_json::Value>| {
        let body = serde_json::to_vec(&serde_json::json!({ "events": events }));
        let request = http
            .put(format!("{base}/_matrix/app/v1/transactions/{txn}"))
            .bearer_auth(&hs_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        async move {
            request.body(body?).send().await?.error_for_status()?;
            anyhow::Ok(())
        }
    };
    let members: Vec<_> = (0..senders)
        .map(|i| serde_json::json!({
            "type": "m.room.member", "state_key": format!("@u{i}:remote.test"), "sender": format!("@u{i}:remote.test"),
            "room_id": matrix_room, "event_id": format!("$member{i}"), "content": { "membership": "join", "displayname": format!("User {i}") },
        }))
        .collect();
    put("members".into(), members).await?;
    // Shaped like the events Synapse pushes, with event ids like its (43 characters that look
    // random: a hash), which land all over the index of message keys.
    let hasher = std::hash::RandomState::new();
    let event_id = |t: usize, i: usize| -> String {
        use std::hash::BuildHasher;
        let id: String = (0..3)
            .map(|k| format!("{:016x}", hasher.hash_one((t, i, k))))
            .collect();
        format!("${}", &id[..43])
    };
    let transaction = |t: usize| -> Vec<serde_json::Value> {
        (0..100)
            .map(|i| serde_json::json!({
                "type": "m.room.message", "sender": format!("@u{}:remote.test", i % senders), "room_id": matrix_room,
                "event_id": event_id(t, i), "origin_server_ts": 1_764_000_000_000_i64 + (t * 100 + i) as i64,
                "content": { "msgtype": "m.text", "body": format!("message {t}/{i} with **bold**") },
                "unsigned": { "age": 12 },
            }))
            .collect()
    };
    // The transactions are serialised before the clock starts: a replay sends recorded bytes.
    let recorded: Vec<(String, Vec<u8>)> = (0..args.matrix_transactions)
        .map(|t| {
            let body = serde_json::to_vec(&serde_json::json!({ "events": transaction(t) }))?;
            anyhow::Ok((format!("{base}/_matrix/app/v1/transactions/txn{t}"), body))
        })
        .collect::<anyhow::Result<_>>()?;
    let cpu_before = child.id().map(cpu_seconds).transpose()?;
    let started = Instant::now();
    for (url, body) in recorded {
        http.put(url)
            .bearer_auth(&hs_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?
            .error_for_status()?;
    }
    let secs = started.elapsed().as_secs_f64();
    let events = args.matrix_transactions * 100;
    let cpu_per_event = match (child.id(), cpu_before) {
        (Some(pid), Some(before)) => (cpu_seconds(pid)? - before) * 1e6 / events as f64,
        _ => f64::NAN,
    };
    // The same events again under a new transaction id: already applied, nothing changes.
    put("replayed".into(), transaction(0)).await?;
    let _ = child.kill().await;
    let store = weft_store::Store::open(&config.database_url()?).await?;
    let stored = store.count_messages(room.id).await?;
    weft_store::close(store).await;
    println!(
        "matrix inbound: {events} events in {} transactions applied in {secs:.2} s = {:.0} events/s \
         ({cpu_per_event:.0} µs of server CPU per event); stored {stored} messages after a replay (expected {events})",
        args.matrix_transactions,
        events as f64 / secs
    );
    if stored != events as i64 {
        bail!("the bridge stored {stored} messages for {events} events");
    }
    Ok(())
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
