//! The chat's figures: durable posts per second, WebSocket fan-out latency, and reads of the
//! big room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};

use super::{BenchArgs, Fixture, cpu_seconds, percentile};

pub(super) async fn posts(
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

pub(super) async fn fanout(
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

pub(super) async fn reads(
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
