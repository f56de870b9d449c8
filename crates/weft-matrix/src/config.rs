//! The `[matrix]` configuration section and the AS registration file it points to.

use std::path::{Path, PathBuf};

use ruma::api::appservice::{Namespace, Namespaces, Registration, RegistrationInit};
use serde::{Deserialize, Serialize};

use crate::{BridgeError, Identities};

/// `[matrix]` in weft's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixSettings {
    /// Where weft reaches the homeserver's client-server API, e.g. `http://127.0.0.1:8008`.
    pub homeserver_url: String,
    /// The homeserver's name (the part after `:` in Matrix IDs).
    pub server_name: String,
    /// The registration YAML given to the homeserver; weft takes its tokens from it.
    pub registration: PathBuf,
    /// What a bridged room's name or topic set on Matrix does (see [`RoomChanges`]).
    #[serde(default)]
    pub room_changes: RoomChanges,
    /// How bridged rooms' members cross by default (see [`Membership`]); `weft matrix
    /// membership` sets it room by room.
    #[serde(default)]
    pub membership: Membership,
    /// How many joins a membership sync keeps in flight at most (it sends fewer while the
    /// homeserver answers 429).
    #[serde(default = "default_member_sync_concurrency")]
    pub member_sync_concurrency: usize,
    /// The origins (`https://host[:port]`) weft fetches weft users' and rooms' avatars from
    /// to set them on Matrix; an avatar anywhere else does not reach Matrix (weft never
    /// fetches an address a user typed unless an admin listed its origin).
    #[serde(default = "default_avatar_origins")]
    pub avatar_origins: Vec<String>,
}

fn default_avatar_origins() -> Vec<String> {
    [
        "https://avatars.githubusercontent.com",
        "https://gitlab.com",
        "https://secure.gravatar.com",
        "https://www.gravatar.com",
    ]
    .map(String::from)
    .to_vec()
}

fn default_member_sync_concurrency() -> usize {
    8
}

/// How a bridged room's members cross between weft and Matrix (`membership` in `[matrix]`,
/// or one room's own setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// Every weft member's puppet is in the Matrix room, and everyone in the Matrix room is
    /// listed among the weft room's members; joins, leaves, kicks and bans cross both ways
    /// as they happen, and a sync (`weft matrix sync-members`) brings a room up to date.
    Full,
    /// Puppets join when their weft user first acts in the room and leave when that user
    /// leaves it; Matrix people show in weft as they speak.
    #[default]
    Lazy,
    /// Membership does not cross: puppets join only to send, and stay.
    Off,
}

impl Membership {
    /// The setting's name, as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Full => "full",
            Membership::Lazy => "lazy",
            Membership::Off => "off",
        }
    }

    /// Reads a setting's name.
    pub fn parse(name: &str) -> Option<Membership> {
        match name {
            "full" => Some(Membership::Full),
            "lazy" => Some(Membership::Lazy),
            "off" => Some(Membership::Off),
            _ => None,
        }
    }
}

/// What happens to a bridged room's name or topic changed on Matrix by someone whose power
/// level allows it there (`room_changes` in `[matrix]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomChanges {
    /// The weft room takes the new name or topic.
    #[default]
    Accept,
    /// Weft keeps its own, and puts it back on Matrix: weft's admins name their rooms.
    Revert,
}

/// The registration key that turns on MSC4190 (device management by the application
/// service: devices without access tokens).
pub const MSC4190_KEY: &str = "io.element.msc4190";

/// Settings plus the registration they point to.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The `[matrix]` section.
    pub settings: MatrixSettings,
    /// The parsed registration.
    pub registration: Registration,
    /// Whether the registration has `io.element.msc4190: true`: the bridge then creates its
    /// users' devices through MSC4190, else through appservice login.
    pub device_management: bool,
}

impl BridgeConfig {
    /// Reads the registration file named in the settings.
    pub fn load(settings: MatrixSettings) -> Result<BridgeConfig, BridgeError> {
        let text = read_registration_text(&settings.registration)?;
        let registration = parse_registration(&settings.registration, &text)?;
        let extensions: Extensions = serde_saphyr::from_str(&text).map_err(|e| {
            BridgeError::Config(format!(
                "the registration {} is not valid: {e}",
                settings.registration.display()
            ))
        })?;
        Ok(BridgeConfig {
            settings,
            registration,
            device_management: extensions.msc4190,
        })
    }
}

/// Keys of the registration that ruma's type does not know.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Extensions {
    #[serde(rename = "io.element.msc4190", default)]
    msc4190: bool,
}

/// Parses a registration YAML file.
pub fn read_registration(path: &Path) -> Result<Registration, BridgeError> {
    parse_registration(path, &read_registration_text(path)?)
}

fn read_registration_text(path: &Path) -> Result<String, BridgeError> {
    std::fs::read_to_string(path).map_err(|e| {
        BridgeError::Config(format!(
            "cannot read the registration {}: {e}",
            path.display()
        ))
    })
}

fn parse_registration(path: &Path, text: &str) -> Result<Registration, BridgeError> {
    serde_saphyr::from_str(text).map_err(|e| {
        BridgeError::Config(format!(
            "the registration {} is not valid: {e}",
            path.display()
        ))
    })
}

/// Builds a registration with fresh random tokens: the YAML for the homeserver and the
/// `[matrix]` section for weft's configuration.
pub fn generate_registration(
    server_name: &str,
    homeserver_url: &str,
    weft_url: &str,
    output: &Path,
) -> Result<(String, String), BridgeError> {
    let ids = Identities::new(server_name, "weft");
    let mut namespaces = Namespaces::new();
    namespaces.users = vec![
        Namespace::new(true, ids.user_namespace()),
        Namespace::new(true, format!("@weft:{}", server_name.replace('.', "\\."))),
    ];
    namespaces.aliases = vec![Namespace::new(true, ids.alias_namespace())];
    let mut registration: Registration = RegistrationInit {
        id: "weft".into(),
        url: Some(weft_url.trim_end_matches('/').to_string()),
        as_token: random_token(),
        hs_token: random_token(),
        sender_localpart: "weft".into(),
        namespaces,
        rate_limited: Some(false),
        protocols: None,
    }
    .into();
    // Only the stable key: with the unstable one too, Synapse sends every ephemeral event twice.
    registration.receive_ephemeral = true;
    // MSC4190: the bridge creates its users' devices without logging them in (see `devices`).
    let generated = Generated {
        registration: &registration,
        extensions: Extensions { msc4190: true },
    };
    let yaml = serde_saphyr::to_string(&generated)
        .map_err(|e| BridgeError::Config(format!("cannot write the registration: {e}")))?;
    let settings = MatrixSettings {
        homeserver_url: homeserver_url.trim_end_matches('/').to_string(),
        server_name: server_name.to_string(),
        registration: output.to_path_buf(),
        membership: Default::default(),
        member_sync_concurrency: 8,
        avatar_origins: default_avatar_origins(),
        room_changes: RoomChanges::default(),
    };
    let toml = format!(
        "[matrix]\nhomeserver_url = {:?}\nserver_name = {:?}\nregistration = {:?}\n",
        settings.homeserver_url,
        settings.server_name,
        settings.registration.display().to_string()
    );
    Ok((yaml, toml))
}

/// The registration as written: ruma's fields and ours.
#[derive(Serialize)]
struct Generated<'a> {
    #[serde(flatten)]
    registration: &'a Registration,
    #[serde(flatten)]
    extensions: Extensions,
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_registration_parses_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registration.yaml");
        let (yaml, toml) = generate_registration(
            "weft.test",
            "http://127.0.0.1:8008/",
            "http://127.0.0.1:8080",
            &path,
        )
        .expect("generated");
        std::fs::write(&path, &yaml).expect("written");
        let parsed = read_registration(&path).expect("parses");
        assert_eq!(parsed.id, "weft");
        assert_eq!(parsed.url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(parsed.as_token.len(), 64);
        assert_ne!(parsed.as_token, parsed.hs_token);
        assert!(parsed.receive_ephemeral);
        assert_eq!(parsed.rate_limited, Some(false));
        assert!(parsed.namespaces.users.iter().all(|n| n.exclusive));
        assert!(
            !yaml.contains("msc2409"),
            "only the stable ephemeral key: {yaml}"
        );
        assert!(yaml.contains("io.element.msc4190: true"), "{yaml}");
        let settings = MatrixSettings {
            homeserver_url: "http://127.0.0.1:8008".into(),
            server_name: "weft.test".into(),
            registration: path.clone(),
            membership: Default::default(),
            member_sync_concurrency: 8,
            avatar_origins: default_avatar_origins(),
            room_changes: RoomChanges::default(),
        };
        let loaded = BridgeConfig::load(settings.clone()).expect("loads");
        assert!(loaded.device_management, "the flag is read back");

        // An older registration, written before the flag: devices through login.
        let older = yaml.replace("io.element.msc4190: true", "");
        std::fs::write(&path, &older).expect("written");
        assert!(
            !BridgeConfig::load(settings)
                .expect("loads")
                .device_management
        );
        assert!(toml.contains("homeserver_url = \"http://127.0.0.1:8008\""));
        assert!(toml.contains("server_name = \"weft.test\""));
    }
}
