//! Matrix → weft: AS transactions replayed to a weft whose bridge points at no homeserver.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use weft_chat::{Actor, Chat, NewRoom};
use weft_core::{Id, RoomKind};

use crate::config::Config;

use super::{BenchArgs, cpu_seconds, free_port, server_log, traffic, wait_ready};

/// Replays AS transactions to a weft whose bridge points at no homeserver, one in flight as a
/// homeserver sends them, in two mixes (see [`traffic`]): the plain one, and the realistic one
/// on 20 other rooms; then checks that a replayed transaction adds nothing and that weft holds
/// exactly the messages each mix leaves.
pub(super) async fn matrix_inbound(
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

    // One room for the plain mix, twenty for the realistic one.
    let rooms = bridged_rooms(config, 21).await?;
    let (plain_room, realistic_rooms) = (&rooms[0], &rooms[1..]);

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
        .env("WEFT_LOG", server_log("error"))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await?;
    let replayer = Replayer {
        http: &http,
        base: &base,
        hs_token: &hs_token,
        pid: child.id(),
    };

    let plain = traffic::plain(&plain_room.1, 50, args.matrix_transactions, 1);
    let plain_figures = replayer.replay("plain", &plain).await?;
    let realistic_names: Vec<String> = realistic_rooms.iter().map(|(_, m)| m.clone()).collect();
    let realistic = traffic::realistic(&realistic_names, 300, args.matrix_transactions, 2);
    let realistic_figures = replayer.replay("realistic", &realistic).await?;
    // The same events again under a new transaction id: already applied, nothing changes.
    replayer
        .put("replayed", &plain.transactions[1])
        .await
        .context("replaying a transaction")?;
    let _ = child.kill().await;

    let store = weft_store::Store::open(&config.database_url()?).await?;
    let stored_plain = store.count_messages(plain_room.0).await?;
    let mut stored_realistic = 0;
    for (room, _) in realistic_rooms {
        stored_realistic += store.count_messages(*room).await?;
    }
    weft_store::close(store).await;
    let mix: Vec<String> = traffic::REALISTIC
        .iter()
        .map(|(kind, share)| {
            let sent = realistic.counts.get(kind).copied().unwrap_or_default();
            format!("{kind:?} {share} ({sent} sent)")
        })
        .collect();
    println!(
        "matrix inbound, realistic mix per 100 events: {}",
        mix.join(", ")
    );
    for (name, figures, stored, expected) in [
        ("plain", &plain_figures, stored_plain, plain.messages),
        (
            "realistic",
            &realistic_figures,
            stored_realistic,
            realistic.messages,
        ),
    ] {
        println!(
            "matrix inbound, {name}: {} events in {} transactions applied in {:.2} s = {:.0} events/s \
             ({:.0} µs of server CPU per event); stored {stored} messages (expected {expected})",
            figures.events,
            figures.transactions,
            figures.seconds,
            figures.rate(),
            figures.cpu_per_event_us,
        );
        if stored != expected as i64 {
            bail!("the {name} mix left {stored} messages, not {expected}");
        }
    }
    println!(
        "matrix inbound: the realistic mix ran at {:.2} of the plain mix's rate",
        realistic_figures.rate() / plain_figures.rate()
    );
    Ok(())
}

/// Public weft rooms bridged to made-up Matrix rooms: (weft room, Matrix room id).
async fn bridged_rooms(config: &Config, n: usize) -> anyhow::Result<Vec<(Id, String)>> {
    let (store, chat): (weft_store::Store, Chat) = crate::open_parts(config).await?;
    let tables = weft_matrix::MatrixTables::open(store).await?;
    let system = Actor::system();
    let group = chat
        .create_group(&system, &format!("mx{}", Id::generate()), None)
        .await?;
    let mut rooms = Vec::with_capacity(n);
    for i in 0..n {
        let room = chat
            .create_room(
                &system,
                NewRoom {
                    group_id: group.id,
                    name: format!("bridged{i}"),
                    topic: String::new(),
                    kind: RoomKind::Public,
                },
            )
            .await?;
        let matrix_room = format!("!bench{i}:bench.test");
        tables
            .insert_room(weft_matrix::MatrixRoom {
                room_id: room.id,
                matrix_room_id: matrix_room.clone(),
                alias: format!("#bench{i}:bench.test"),
                open: true,
            })
            .await?;
        rooms.push((room.id, matrix_room));
    }
    chat.close().await;
    Ok(rooms)
}

/// Sends transactions as a homeserver does, one in flight.
struct Replayer<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    hs_token: &'a str,
    pid: Option<u32>,
}

/// What one mix measured.
struct Figures {
    events: usize,
    transactions: usize,
    seconds: f64,
    cpu_per_event_us: f64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

impl Replayer<'_> {
    fn url(&self, txn: &str) -> String {
        format!("{}/_matrix/app/v1/transactions/{txn}", self.base)
    }

    /// PUTs a transaction's recorded bytes as the homeserver does.
    async fn send(&self, url: String, body: Vec<u8>) -> anyhow::Result<()> {
        self.http
            .put(url)
            .bearer_auth(self.hs_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn put(&self, txn: &str, events: &[serde_json::Value]) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&serde_json::json!({ "events": events }))?;
        self.send(self.url(txn), body).await
    }

    /// Sends a run's first transaction (the plain mix's member events) untimed, then times
    /// the rest, serialised before the clock starts: a replay sends recorded bytes.
    async fn replay(&self, name: &str, run: &traffic::Run) -> anyhow::Result<Figures> {
        let (warm_up, timed) = match name {
            "plain" => run.transactions.split_at(1),
            _ => run.transactions.split_at(0),
        };
        for (i, events) in warm_up.iter().enumerate() {
            self.put(&format!("{name}-warm-{i}"), events).await?;
        }
        let recorded: Vec<(String, Vec<u8>)> = timed
            .iter()
            .enumerate()
            .map(|(t, events)| {
                let body = serde_json::to_vec(&serde_json::json!({ "events": events }))?;
                let url = self.url(&format!("{name}{t}"));
                anyhow::Ok((url, body))
            })
            .collect::<anyhow::Result<_>>()?;
        let cpu_before = self.pid.map(cpu_seconds).transpose()?;
        let started = Instant::now();
        for (url, body) in recorded {
            self.send(url, body).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let events: usize = timed.iter().map(Vec::len).sum();
        let cpu_per_event_us = match (self.pid, cpu_before) {
            (Some(pid), Some(before)) => (cpu_seconds(pid)? - before) * 1e6 / events as f64,
            _ => f64::NAN,
        };
        Ok(Figures {
            events,
            transactions: timed.len(),
            seconds,
            cpu_per_event_us,
        })
    }
}
