//! The `weft` command: runs the server and administers it.

mod bench;
mod config;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weft_chat::{Actor, Chat, ChatConfig, NewRoom, NewUser};
use weft_core::RoomKind;
use weft_server::{AppState, ServerConfig};
use weft_store::Store;

use config::{Config, Overrides};

/// glibc's allocator spent about a fifth of the server's CPU on the write path (many small
/// rows, strings and JSON values freed across threads); mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Developer community chat that natively speaks Matrix.
#[derive(Parser)]
#[command(name = "weft", version)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Manages user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manages personal access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manages communities.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Manages rooms.
    Room {
        #[command(subcommand)]
        command: RoomCommand,
    },
    /// Measures throughput and latency against a real server process.
    Bench(bench::BenchArgs),
    /// Sets up and checks the Matrix bridge.
    Matrix {
        #[command(subcommand)]
        command: MatrixCommand,
    },
}

#[derive(Subcommand)]
enum MatrixCommand {
    /// Writes an Application Service registration for the homeserver and prints the
    /// `[matrix]` section to add to weft's configuration.
    Registration {
        /// The homeserver's name (the part after `:` in Matrix IDs).
        #[arg(long)]
        server_name: String,
        /// Where weft reaches the homeserver, e.g. http://127.0.0.1:8008.
        #[arg(long)]
        homeserver_url: String,
        /// Where the homeserver reaches weft, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        weft_url: String,
        /// The registration file to write.
        #[arg(long)]
        output: std::path::PathBuf,
    },
    /// Checks both directions between weft (running) and the homeserver.
    Ping,
    /// Brings a room's membership up to date on both sides: every weft member's puppet
    /// joins the Matrix room (paced, resumable) and everyone in the Matrix room is listed
    /// among the room's members. The running server does it (this shows its progress); with
    /// no server running, or `--here`, this process does.
    SyncMembers {
        /// The room, as `community/room`.
        room: String,
        /// Run the sync in this process rather than the server's.
        #[arg(long)]
        here: bool,
    },
    /// Sets how a room's members cross (`full`, `lazy`, `off`, or `default` for the
    /// configuration's); `full` syncs the room at once.
    Membership {
        /// The room, as `community/room`.
        room: String,
        /// `full`, `lazy`, `off` or `default`.
        mode: String,
    },
    /// Lists what the bridge could not carry and gave up on, newest first: one line each,
    /// with when, the weft room and why. Transient failures are retried, never listed.
    Failures {
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user.
    Create {
        /// Username.
        name: String,
        /// Password for signing in to the web app.
        #[arg(long)]
        password: Option<String>,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Make the user a site administrator.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates a personal access token for a user and prints it.
    Create {
        /// Username.
        name: String,
        /// Label for the token.
        #[arg(long, default_value = "cli")]
        label: String,
        /// Allow posting as virtual users (for bridges).
        #[arg(long)]
        bridge: bool,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Creates a community.
    Create {
        /// URI, e.g. `rust-lang`.
        uri: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum RoomCommand {
    /// Creates a room in an existing community.
    Create {
        /// `community/room`.
        uri: String,
        /// Only members may read it.
        #[arg(long)]
        private: bool,
        /// Topic line.
        #[arg(long, default_value = "")]
        topic: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft: could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the chat service as configured.
async fn open(config: &Config) -> anyhow::Result<Chat> {
    Ok(open_parts(config).await?.1)
}

/// Opens the store and the chat service over it: the store for what keeps its own tables
/// beside the chat's (the Matrix bridge) and for the benchmark's bulk loads.
async fn open_parts(config: &Config) -> anyhow::Result<(Store, Chat)> {
    let url = config.database_url()?;
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", redact(&url)))?;
    std::fs::create_dir_all(config.files_dir())?;
    let files = object_store::local::LocalFileSystem::new_with_prefix(config.files_dir())
        .context("opening the file store")?;
    let chat_config = ChatConfig {
        edit_window_ms: i64::from(config.edit_window_minutes) * 60_000,
        max_upload_bytes: config.max_upload_mb as usize * 1024 * 1024,
        ..ChatConfig::default()
    };
    Ok((
        store.clone(),
        Chat::new(store, Arc::new(files), chat_config),
    ))
}

/// Hides a password in a database URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    let config = Config::load(&cli.overrides, listen)?;
    match cli.command {
        Command::Serve { .. } => serve(config).await,
        Command::User {
            command:
                UserCommand::Create {
                    name,
                    password,
                    display_name,
                    admin,
                },
        } => {
            let chat = open(&config).await?;
            let user = chat
                .create_user(NewUser {
                    username: name,
                    display_name,
                    password,
                    site_admin: admin,
                })
                .await?;
            println!("{}", user.id);
            Ok(())
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    name,
                    label,
                    bridge,
                },
        } => {
            let chat = open(&config).await?;
            let user = chat.user_by_username(&name).await?;
            let (_, secret) = chat.create_token(user.id, &label, bridge).await?;
            println!("{secret}");
            Ok(())
        }
        Command::Group {
            command: GroupCommand::Create { uri, name },
        } => {
            let chat = open(&config).await?;
            let group = chat.create_group(&Actor::system(), &uri, name).await?;
            println!("{}", group.id);
            Ok(())
        }
        Command::Room {
            command:
                RoomCommand::Create {
                    uri,
                    private,
                    topic,
                },
        } => {
            let chat = open(&config).await?;
            let (group_uri, room_name) = weft_core::validate::room_uri(&uri)?;
            let group = chat
                .views()
                .community_by_uri(group_uri)
                .await?
                .with_context(|| {
                    format!(
                        "no community {group_uri}: create it with `weft group create {group_uri}`"
                    )
                })?;
            let kind = if private {
                RoomKind::Private
            } else {
                RoomKind::Public
            };
            let room = chat
                .create_room(
                    &Actor::system(),
                    NewRoom {
                        group_id: group.id,
                        name: room_name.to_string(),
                        topic,
                        kind,
                    },
                )
                .await?;
            println!("{}", room.id);
            Ok(())
        }
        Command::Bench(args) => bench::run(args, &config).await,
        Command::Matrix { command } => matrix_command(command, &config).await,
    }
}

async fn matrix_command(command: MatrixCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        MatrixCommand::Registration {
            server_name,
            homeserver_url,
            weft_url,
            output,
        } => {
            let output = std::path::absolute(&output)?;
            let (yaml, toml) = weft_matrix::generate_registration(
                &server_name,
                &homeserver_url,
                &weft_url,
                &output,
            )?;
            write_private(&output, &yaml)
                .with_context(|| format!("writing {}", output.display()))?;
            eprintln!(
                "wrote {}; give it to the homeserver (app_service_config_files) and add to weft's config:",
                output.display()
            );
            println!("{toml}");
            Ok(())
        }
        MatrixCommand::Ping => ping(config).await,
        MatrixCommand::SyncMembers { room, here } => {
            let (bridge, room) = bridge_and_room(config, &room).await?;
            sync_members_with_progress(&bridge, &room, here).await
        }
        MatrixCommand::Membership { room, mode } => {
            let mode = match mode.as_str() {
                "default" => None,
                other => Some(weft_matrix::Membership::parse(other).with_context(|| {
                    format!("unknown membership {other:?}: say full, lazy, off or default")
                })?),
            };
            let (bridge, room) = bridge_and_room(config, &room).await?;
            bridge.set_membership(room.id, mode).await?;
            let now = bridge.membership_of(room.id).await?;
            println!(
                "{}: membership {}",
                room.uri.clone().unwrap_or_default(),
                now.as_str()
            );
            if now == weft_matrix::Membership::Full {
                sync_members_with_progress(&bridge, &room, false).await?;
            }
            Ok(())
        }
        MatrixCommand::Failures { limit } => {
            let (store, _chat) = open_parts(config).await?;
            let tables = weft_matrix::MatrixTables::open(store).await?;
            let failures = tables.failures(limit.max(1)).await?;
            let total = tables.failure_count().await?;
            for f in &failures {
                let room = f.room_id.map(|r| r.to_hex()).unwrap_or_else(|| "-".into());
                let seq = if f.event_seq > 0 {
                    format!("log {}", f.event_seq)
                } else {
                    "from Matrix".into()
                };
                println!("{}\t{room}\t{seq}\t{}", weft_core::iso8601(f.at), f.error);
            }
            eprintln!("{total} permanent failure(s) recorded");
            Ok(())
        }
    }
}

/// The bridge over the configured database (not started: no sender, no listener) and a
/// room named by its URI.
async fn bridge_and_room(
    config: &Config,
    uri: &str,
) -> anyhow::Result<(weft_matrix::Bridge, weft_core::Room)> {
    let settings = config
        .matrix
        .clone()
        .context("no [matrix] section in the configuration")?;
    let (store, chat) = open_parts(config).await?;
    let room = chat
        .views()
        .room_by_uri(uri)
        .await?
        .with_context(|| format!("there is no room {uri}"))?;
    let bridge =
        weft_matrix::Bridge::new(chat, store, weft_matrix::BridgeConfig::load(settings)?).await?;
    Ok((bridge, room))
}

/// How long a sync asked for may wait for a running server to take it up before this
/// process runs it itself.
const SYNC_TAKE_UP: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks for a room's membership sync and shows its progress on the terminal: the running
/// server does it (a second process writing the same SQLite file would slow both), unless
/// none takes it up in time or `here` says to run it in this process.
async fn sync_members_with_progress(
    bridge: &weft_matrix::Bridge,
    room: &weft_core::Room,
    here: bool,
) -> anyhow::Result<()> {
    let uri = room.uri.clone().unwrap_or_default();
    let asked = bridge.request_member_sync(room.id).await?;
    let requested = asked.requested_at.unwrap_or_default();
    let bar = indicatif::ProgressBar::new(asked.total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} members, {per_sec}, {eta} left",
        )
        .context("the progress bar's template")?
        .progress_chars("=> "),
    );
    bar.set_message(uri.clone());
    let show = |sync: &weft_matrix::MemberSync| {
        // Members join while the sync runs: the bar grows with them.
        bar.set_length(sync.total.max(sync.walked).max(0) as u64);
        bar.set_position(sync.walked.max(0) as u64);
    };
    let sync = if here {
        bridge.sync_members(room.id, &show).await?
    } else {
        let deadline = std::time::Instant::now() + SYNC_TAKE_UP;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let sync = bridge
                .member_sync(room.id)
                .await?
                .context("the membership sync asked for is gone")?;
            show(&sync);
            let taken_up = sync.updated_at.is_some_and(|at| at >= requested);
            if taken_up && sync.finished_at.is_some() {
                break sync;
            }
            if !taken_up && std::time::Instant::now() > deadline {
                bar.suspend(|| {
                    eprintln!(
                        "no running weft server took the sync up within {} s; running it here",
                        SYNC_TAKE_UP.as_secs()
                    )
                });
                break bridge.sync_members(room.id, &show).await?;
            }
        }
    };
    bar.finish();
    println!(
        "{uri}: {} member(s) in on Matrix, {} of them joined now",
        sync.walked, sync.joined
    );
    Ok(())
}

/// Writes a file only its owner may read (it holds secrets).
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its old mode on open: tighten it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
}

/// Checks weft → homeserver (the AS token) and homeserver → weft (the spec's ping), and
/// says what to fix when either fails.
async fn ping(config: &Config) -> anyhow::Result<()> {
    let settings = config
        .matrix
        .clone()
        .context("no [matrix] section in the configuration")?;
    let bridge = weft_matrix::BridgeConfig::load(settings)?;
    let hs = weft_matrix::Homeserver::new(
        &bridge.settings.homeserver_url,
        &bridge.registration.as_token,
    );
    match hs.whoami().await {
        Ok(me) => println!("weft -> homeserver: ok, the AS token is accepted ({me})"),
        Err(e) if e.status.is_none() => {
            anyhow::bail!(
                "weft -> homeserver: cannot reach {} ({})",
                bridge.settings.homeserver_url,
                e.message
            )
        }
        Err(e) if e.errcode == "M_UNKNOWN_TOKEN" || e.status == Some(401) => anyhow::bail!(
            "weft -> homeserver: the homeserver does not know this registration's as_token; \
             list the registration file in its app_service_config_files and restart it"
        ),
        Err(e) => anyhow::bail!("weft -> homeserver: {e}"),
    }
    let txn = format!("ping-{}", weft_core::Id::generate());
    match hs.ping(&bridge.registration.id, &txn).await {
        Ok(ms) => {
            println!("homeserver -> weft: ok ({ms} ms)");
            Ok(())
        }
        Err(e) => {
            let why = match e.errcode.as_str() {
                "M_URL_NOT_SET" => "the registration has no url for weft".to_string(),
                "M_CONNECTION_FAILED" | "M_CONNECTION_TIMEOUT" => format!(
                    "the homeserver cannot reach weft at {}: is `weft serve` running there?",
                    bridge.registration.url.clone().unwrap_or_default()
                ),
                "M_BAD_STATUS" => "weft refused the homeserver's request: the hs_token in the homeserver's copy of \
                                   the registration differs from weft's"
                    .to_string(),
                _ => e.to_string(),
            };
            anyhow::bail!("homeserver -> weft: {why}")
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log);
    let (store, chat) = open_parts(&config).await?;
    let server_config = ServerConfig {
        rate_limit_per_minute: config.rate_limit_per_minute,
        trusted_proxies: config.trusted_proxies.clone(),
        matrix_server_name: config.matrix.as_ref().map(|m| m.server_name.clone()),
        ..ServerConfig::default()
    };
    let state = AppState::new(chat.clone(), server_config);
    let mut app = weft_server::app(state);
    if let Some(settings) = config.matrix.clone() {
        let bridge =
            weft_matrix::Bridge::new(chat, store, weft_matrix::BridgeConfig::load(settings)?)
                .await?;
        bridge.start();
        app = bridge.router().merge(bridge.public_router()).merge(app);
        tracing::info!("bridging to Matrix");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, data = %config::describe(&config.data_dir), "weft is serving");
    println!("weft listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
