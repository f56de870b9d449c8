//! A database that an earlier weft migrated, when the store still held the bridge's tables,
//! opens with everything in it: the store adopts its split migration, the bridge's migrations
//! find their tables there, and a second start changes nothing. The earlier migrations are
//! kept verbatim under `tests/fixtures/before-the-split`.

use std::path::Path;

use sqlx::migrate::Migrator;
use weft_core::Id;
use weft_matrix::{Carried, MatrixRoom, MatrixTables};
use weft_store::Store;
use weft_store::testing::{Guard, empty_postgres, empty_sqlite};

/// Migrates `url` as the earlier weft did and writes a bridged room and a mapping into it.
async fn migrate_as_before(url: &str, dialect: &str, room_id: Id, message_id: Id) {
    sqlx::any::install_default_drivers();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/before-the-split")
        .join(dialect);
    let migrator = Migrator::new(fixtures)
        .await
        .expect("the earlier migrations");
    let connect = if dialect == "sqlite" {
        format!("{url}?mode=rwc")
    } else {
        url.to_string()
    };
    let pool = sqlx::AnyPool::connect(&connect).await.expect("connect");
    migrator.run(&pool).await.expect("the earlier schema");
    sqlx::query("INSERT INTO matrix_rooms (room_id, matrix_room_id, alias, created_at, is_open) VALUES ($1, '!old:hs', '#c_old:hs', 1, 0)")
        .bind(room_id.to_hex())
        .execute(&pool)
        .await
        .expect("a bridged room");
    sqlx::query("INSERT INTO matrix_events (matrix_event_id, matrix_room_id, kind, weft_ref, direction) VALUES ('$old:hs', '!old:hs', 'message', $1, 'out')")
        .bind(message_id.to_hex())
        .execute(&pool)
        .await
        .expect("a mapping");
    pool.close().await;
}

async fn upgrade(url: String, guard: Guard, dialect: &str) {
    let (room_id, message_id) = (Id::generate(), Id::generate());
    migrate_as_before(&url, dialect, room_id, message_id).await;
    for start in ["first", "second"] {
        let store = Store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("the {start} start opens the earlier database: {e}"));
        let tables = MatrixTables::open(store.clone())
            .await
            .unwrap_or_else(|e| panic!("the {start} start runs the bridge's migrations: {e}"));
        assert_eq!(
            tables.room(room_id).await.expect("room"),
            Some(MatrixRoom {
                room_id,
                matrix_room_id: "!old:hs".into(),
                alias: "#c_old:hs".into(),
                open: false,
            }),
            "the {start} start keeps the bridged room"
        );
        assert_eq!(
            tables.carried_by("$old:hs").await.expect("mapping"),
            Some(Carried::Message(message_id)),
            "the {start} start keeps the mapping"
        );
        if start == "first" {
            let fresh = MatrixRoom {
                room_id: Id::generate(),
                matrix_room_id: "!new:hs".into(),
                alias: "#c_new:hs".into(),
                open: true,
            };
            assert!(tables.insert_room(fresh).await.expect("a new bridged room"));
            weft_store::close(store).await;
        } else {
            assert!(
                tables
                    .room_for_matrix("!new:hs")
                    .await
                    .expect("room")
                    .is_some()
            );
            guard.finish(store).await;
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_from_before_the_split_opens() {
    let (url, guard) = empty_sqlite();
    upgrade(url, guard, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_from_before_the_split_opens() {
    let (url, guard) = empty_postgres().await;
    upgrade(url, guard, "postgres").await;
}
