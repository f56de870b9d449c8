//! What the bridge's integration tests share: a bridge configuration pointing at a given
//! homeserver, a chat over a test store, and a public room bridged to a made-up Matrix room.

use std::sync::Arc;

use weft_chat::{Actor, Chat, ChatConfig, NewRoom};
use weft_core::{Room, RoomKind};
use weft_matrix::{BridgeConfig, MatrixRoom, MatrixSettings, MatrixTables};
use weft_store::Store;

/// The Matrix room the test portal is bridged to.
pub const MATRIX_ROOM: &str = "!portal:hs.test";

/// A fresh registration and the bridge's configuration for a homeserver at `hs_url`; the
/// folder holding the registration lives as long as the returned guard.
pub fn bridge_config(hs_url: &str) -> (BridgeConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let registration = dir.path().join("registration.yaml");
    let (yaml, _) =
        weft_matrix::generate_registration("hs.test", hs_url, "http://127.0.0.1:1", &registration)
            .expect("a registration");
    std::fs::write(&registration, yaml).expect("write the registration");
    let config = BridgeConfig::load(MatrixSettings {
        homeserver_url: hs_url.to_string(),
        server_name: "hs.test".into(),
        registration,
        membership: Default::default(),
        member_sync_concurrency: 8,
        avatar_origins: Vec::new(),
        room_changes: Default::default(),
    })
    .expect("the bridge's configuration");
    (config, dir)
}

/// The chat service over a test store, with files in memory.
pub fn chat_over(store: &Store) -> Chat {
    Chat::new(
        store.clone(),
        Arc::new(object_store::memory::InMemory::new()),
        ChatConfig::default(),
    )
}

/// `acme/general`, public, bridged to [`MATRIX_ROOM`].
pub async fn portal(chat: &Chat, tables: &MatrixTables) -> Room {
    let system = Actor::system();
    let group = chat
        .create_group(&system, "acme", None)
        .await
        .expect("a community");
    let room = chat
        .create_room(
            &system,
            NewRoom {
                group_id: group.id,
                name: "general".into(),
                topic: String::new(),
                kind: RoomKind::Public,
            },
        )
        .await
        .expect("a room");
    tables
        .insert_room(MatrixRoom {
            room_id: room.id,
            matrix_room_id: MATRIX_ROOM.into(),
            alias: "#acme_general:hs.test".into(),
            open: true,
        })
        .await
        .expect("the portal");
    room
}
