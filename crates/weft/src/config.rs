//! Configuration: defaults, then a TOML file (`--config`), then `WEFT_*` environment
//! variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `weft` reads from its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder holding the SQLite database and uploaded files.
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite database.
    pub database_url: Option<String>,
    /// Minutes after sending during which a message may be edited.
    pub edit_window_minutes: u32,
    /// Largest upload, in megabytes.
    pub max_upload_mb: u32,
    /// API requests a token may make per minute (0: unlimited).
    pub rate_limit_per_minute: u32,
    /// Addresses of reverse proxies or load balancers in front of weft, whose
    /// `X-Forwarded-For` names the real client (for rate limits by address).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Log filter (`info`, `weft=debug`, …).
    pub log: String,
    /// The Matrix bridge; weft bridges whenever this section is present.
    pub matrix: Option<weft_matrix::MatrixSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("weft-data"),
            database_url: None,
            edit_window_minutes: 10,
            max_upload_mb: 20,
            rate_limit_per_minute: 1200,
            trusted_proxies: Vec::new(),
            log: "info".into(),
            matrix: None,
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct Overrides {
    /// Configuration file (TOML).
    #[arg(long, global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Folder for the SQLite database and uploads [default: ./weft-data].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…) instead of the embedded SQLite database.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the configuration in order of precedence.
    pub fn load(overrides: &Overrides, listen: Option<SocketAddr>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &overrides.config {
            if !file.exists() {
                anyhow::bail!("configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(Env::prefixed("WEFT_"))
            .merge(Serialized::defaults(overrides));
        if let Some(listen) = listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        Ok(figment.extract()?)
    }

    /// The database URL: PostgreSQL if configured, otherwise SQLite in the data folder.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data_dir)?;
        Ok(format!(
            "sqlite:{}",
            self.data_dir.join("weft.db").display()
        ))
    }

    /// Where uploads are kept.
    pub fn files_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }
}

/// Whether a path looks like it is inside `dir` (for messages).
pub fn describe(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}
