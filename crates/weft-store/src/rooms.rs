//! Rooms, memberships, bans and read state.

use sqlx::Row;
use sqlx::any::AnyRow;
use weft_core::{Id, Membership, Profile, Role, Room, User, VirtualUser};

use crate::rows;
use crate::{Result, Store, StoreError, WriteTx};

/// A room in a user's room list, with their membership.
#[derive(Debug, Clone)]
pub struct RoomWithMembership {
    /// The room.
    pub room: Room,
    /// The user's membership.
    pub membership: Membership,
}

fn room(row: &AnyRow) -> Result<Room> {
    Ok(Room {
        id: rows::id(row, "id")?,
        group_id: rows::opt_id(row, "community_id")?,
        uri: row.try_get("uri")?,
        name: row.try_get("name")?,
        topic: row.try_get("topic")?,
        kind: rows::room_kind(row, "kind")?,
        avatar_url: row.try_get("avatar_url")?,
        noindex: rows::flag(row, "noindex")?,
        member_count: row.try_get("member_count")?,
        created_at: row.try_get("created_at")?,
    })
}

fn membership(row: &AnyRow) -> Result<Membership> {
    let role: String = row.try_get("m_role")?;
    Ok(Membership {
        room_id: rows::id(row, "m_room_id")?,
        user_id: rows::id(row, "m_user_id")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?,
        last_read_seq: row.try_get("m_last_read_seq")?,
        favourite: rows::flag(row, "m_favourite")?,
        joined_at: row.try_get("m_joined_at")?,
    })
}

impl Store {
    /// The room whose `community/room` URI, spelled with `sep` instead of `/` and in any case,
    /// is `flat`: how a network whose names cannot hold a slash names a room (a Matrix alias's
    /// localpart). Several rooms could flatten the same; the oldest wins.
    pub async fn room_by_flattened_uri(&self, flat: &str, sep: char) -> Result<Option<Room>> {
        let row = sqlx::query(
            "SELECT id FROM rooms WHERE uri_lower IS NOT NULL AND REPLACE(uri_lower, '/', $2) = $1 ORDER BY created_at LIMIT 1",
        )
        .bind(flat.to_lowercase())
        .bind(sep.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => self.room(rows::id(&r, "id")?).await,
            None => Ok(None),
        }
    }

    /// A room by id.
    pub(crate) async fn load_room(&self, id: Id) -> Result<Option<Room>> {
        let row = sqlx::query(
            "SELECT id, community_id, uri, name, topic, kind, avatar_url, noindex, member_count, created_at \
             FROM rooms WHERE id = $1",
        )
        .bind(id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(room).transpose()
    }

    /// A room by `community/room` URI, ignoring case.
    pub async fn room_by_uri(&self, uri: &str) -> Result<Option<Room>> {
        let row = sqlx::query(
            "SELECT id, community_id, uri, name, topic, kind, avatar_url, noindex, member_count, created_at \
             FROM rooms WHERE uri_lower = $1",
        )
        .bind(uri.to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(room).transpose()
    }

    /// The one-to-one room between two users, if they have one.
    pub async fn one_to_one_room(&self, a: Id, b: Id) -> Result<Option<Room>> {
        let row = sqlx::query(
            "SELECT id, community_id, uri, name, topic, kind, avatar_url, noindex, member_count, created_at \
             FROM rooms WHERE one_to_one_key = $1",
        )
        .bind(one_to_one_key(a, b))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(room).transpose()
    }

    /// The rooms of a community, by URI.
    pub async fn rooms_of_community(&self, community_id: Id) -> Result<Vec<Room>> {
        let rows = sqlx::query(
            "SELECT id, community_id, uri, name, topic, kind, avatar_url, noindex, member_count, created_at \
             FROM rooms WHERE community_id = $1 ORDER BY uri_lower",
        )
        .bind(community_id.to_hex())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(room).collect()
    }

    /// Public rooms whose URI, name or topic contains `q` (all when empty), busiest first.
    pub async fn public_rooms(&self, q: &str, limit: i64, skip: i64) -> Result<Vec<Room>> {
        let pattern = format!("%{}%", q.to_lowercase().replace(['%', '_', '\\'], ""));
        let rows = sqlx::query(
            "SELECT id, community_id, uri, name, topic, kind, avatar_url, noindex, member_count, created_at \
             FROM rooms WHERE kind = 'public' AND (uri_lower LIKE $1 OR LOWER(name) LIKE $1 OR LOWER(topic) LIKE $1) \
             ORDER BY member_count DESC, uri_lower LIMIT $2 OFFSET $3",
        )
        .bind(pattern)
        .bind(limit)
        .bind(skip)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(room).collect()
    }

    /// The rooms a user is in, with their membership, favourites first.
    pub async fn rooms_of_user(&self, user_id: Id) -> Result<Vec<RoomWithMembership>> {
        let rows = sqlx::query(
            "SELECT r.id, r.community_id, r.uri, r.name, r.topic, r.kind, r.avatar_url, r.noindex, r.member_count, r.created_at, \
             m.room_id AS m_room_id, m.user_id AS m_user_id, m.role AS m_role, m.last_read_seq AS m_last_read_seq, \
             m.favourite AS m_favourite, m.joined_at AS m_joined_at \
             FROM memberships m JOIN rooms r ON r.id = m.room_id WHERE m.user_id = $1 \
             ORDER BY m.favourite DESC, r.name",
        )
        .bind(user_id.to_hex())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RoomWithMembership {
                    room: room(r)?,
                    membership: membership(r)?,
                })
            })
            .collect()
    }

    /// A user's membership of a room.
    pub async fn membership(&self, room_id: Id, user_id: Id) -> Result<Option<Membership>> {
        let row = sqlx::query(
            "SELECT room_id AS m_room_id, user_id AS m_user_id, role AS m_role, last_read_seq AS m_last_read_seq, \
             favourite AS m_favourite, joined_at AS m_joined_at FROM memberships WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id.to_hex())
        .bind(user_id.to_hex())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(membership).transpose()
    }

    /// Whether the user is banned from the room.
    pub async fn is_banned(&self, room_id: Id, user_id: Id) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM bans WHERE room_id = $1 AND user_id = $2")
            .bind(room_id.to_hex())
            .bind(user_id.to_hex())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// The members of a room who are moderators or admins, with their roles.
    pub async fn room_staff(&self, room_id: Id) -> Result<Vec<(User, Role)>> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.avatar_url, u.site_admin, u.created_at, m.role AS m_role \
             FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.room_id = $1 AND m.role <> 'member'",
        )
        .bind(room_id.to_hex())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(user_with_role).collect()
    }

    /// A page of a room's members with their roles, by username; `q` filters by name prefix.
    pub async fn members(
        &self,
        room_id: Id,
        q: &str,
        limit: i64,
        skip: i64,
    ) -> Result<Vec<(User, Role)>> {
        let pattern = rows::prefix_pattern(q);
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.avatar_url, u.site_admin, u.created_at, m.role AS m_role \
             FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.room_id = $1 \
             AND (u.username_lower LIKE $2 OR LOWER(u.display_name) LIKE $2) \
             ORDER BY u.username_lower LIMIT $3 OFFSET $4",
        )
        .bind(room_id.to_hex())
        .bind(pattern)
        .bind(limit)
        .bind(skip)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(user_with_role).collect()
    }

    /// Ids of messages in the room after `after_seq` not written by the user, oldest first,
    /// at most `cap` (main feed and threads alike).
    pub async fn unread_message_ids(
        &self,
        room_id: Id,
        user_id: Id,
        after_seq: i64,
        cap: i64,
    ) -> Result<Vec<Id>> {
        let rows = sqlx::query(
            "SELECT id FROM messages WHERE room_id = $1 AND seq > $2 AND author_id <> $3 AND deleted = 0 \
             ORDER BY seq LIMIT $4",
        )
        .bind(room_id.to_hex())
        .bind(after_seq)
        .bind(user_id.to_hex())
        .bind(cap)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| rows::id(r, "id")).collect()
    }

    /// Ids of unread messages in the room that mention the user, oldest first.
    pub async fn unread_mention_ids(
        &self,
        room_id: Id,
        user_id: Id,
        after_seq: i64,
        cap: i64,
    ) -> Result<Vec<Id>> {
        let rows = sqlx::query(
            "SELECT m.id FROM mentions n JOIN messages m ON m.seq = n.message_seq \
             WHERE n.user_id = $1 AND n.room_id = $2 AND n.message_seq > $3 AND m.deleted = 0 AND m.author_id <> $1 \
             ORDER BY n.message_seq LIMIT $4",
        )
        .bind(user_id.to_hex())
        .bind(room_id.to_hex())
        .bind(after_seq)
        .bind(cap)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| rows::id(r, "id")).collect()
    }

    /// How many readers each message from `min_seq` on has: for each seq in `seqs`, the number
    /// of members whose read mark is at or after it.
    pub async fn read_by(&self, room_id: Id, seqs: &[i64]) -> Result<Vec<i64>> {
        let Some(&min_seq) = seqs.iter().min() else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query("SELECT seq, readers FROM read_marks WHERE room_id = $1 AND seq >= $2 ORDER BY seq DESC")
            .bind(room_id.to_hex())
            .bind(min_seq)
            .fetch_all(self.pool())
            .await?;
        let marks: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>("seq")?, r.try_get::<i64, _>("readers")?)))
            .collect::<Result<_>>()?;
        // Suffix sums over the marks, walked from the newest mark down.
        let mut order: Vec<(usize, i64)> = seqs.iter().copied().enumerate().collect();
        order.sort_by_key(|&(_, seq)| std::cmp::Reverse(seq));
        let mut out = vec![0; seqs.len()];
        let (mut acc, mut next) = (0i64, 0usize);
        for (index, seq) in order {
            while next < marks.len() && marks[next].0 >= seq {
                acc += marks[next].1;
                next += 1;
            }
            out[index] = acc;
        }
        Ok(out)
    }

    /// A page of the people who have read up to `seq` or further (their read mark is at or
    /// after it): members, and people of other networks whose read receipts a bridge
    /// recorded; by name, members by username, others by display name. Exactly the people
    /// [`Store::read_by`] counts.
    pub async fn readers(
        &self,
        room_id: Id,
        seq: i64,
        limit: i64,
        skip: i64,
    ) -> Result<Vec<Profile>> {
        let page = sqlx::query(
            "SELECT kind, id FROM ( \
               SELECT 'user' AS kind, u.id AS id, u.username_lower AS sort_key \
               FROM memberships m JOIN users u ON u.id = m.user_id \
               WHERE m.room_id = $1 AND m.last_read_seq >= $2 \
               UNION ALL \
               SELECT 'virtual', v.id, LOWER(v.display_name) \
               FROM virtual_read_marks r JOIN virtual_users v ON v.id = r.virtual_user_id \
               WHERE r.room_id = $1 AND r.last_read_seq >= $2 \
             ) readers ORDER BY sort_key, id LIMIT $3 OFFSET $4",
        )
        .bind(room_id.to_hex())
        .bind(seq)
        .bind(limit)
        .bind(skip)
        .fetch_all(self.pool())
        .await?;
        let mut readers = Vec::with_capacity(page.len());
        for row in &page {
            let id = rows::id(row, "id")?;
            let kind: String = row.try_get("kind")?;
            // A page is at most a hundred people, read by id from the primary keys.
            let reader = if kind == "user" {
                self.user(id).await?.map(Profile::User)
            } else {
                self.virtual_user(id).await?.map(Profile::Virtual)
            };
            readers.extend(reader);
        }
        Ok(readers)
    }

    /// How many weft users are members of a room whose name starts with `q` (as
    /// [`Store::members`] filters them).
    pub async fn member_total(&self, room_id: Id, q: &str) -> Result<i64> {
        let pattern = rows::prefix_pattern(q);
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.room_id = $1 \
             AND (u.username_lower LIKE $2 OR LOWER(u.display_name) LIKE $2)",
        )
        .bind(room_id.to_hex())
        .bind(pattern)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// A page of the people from other networks listed among a room's members, by name;
    /// `q` filters by a prefix of their name or external id.
    pub async fn virtual_members(
        &self,
        room_id: Id,
        q: &str,
        limit: i64,
        skip: i64,
    ) -> Result<Vec<VirtualUser>> {
        let pattern = rows::prefix_pattern(q);
        let rows = sqlx::query(
            "SELECT v.id, v.kind, v.external_id, v.display_name, v.avatar_url \
             FROM virtual_memberships m JOIN virtual_users v ON v.id = m.virtual_user_id WHERE m.room_id = $1 \
             AND (LOWER(v.external_id) LIKE $2 OR LOWER(v.display_name) LIKE $2) \
             ORDER BY LOWER(v.display_name), v.external_id LIMIT $3 OFFSET $4",
        )
        .bind(room_id.to_hex())
        .bind(pattern)
        .bind(limit)
        .bind(skip)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::virtual_user).collect()
    }

    /// The external ids of one network's people listed among a room's members.
    pub async fn virtual_member_ids(&self, room_id: Id, kind: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT v.external_id FROM virtual_memberships m JOIN virtual_users v ON v.id = m.virtual_user_id \
             WHERE m.room_id = $1 AND v.kind = $2",
        )
        .bind(room_id.to_hex())
        .bind(kind)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("external_id")?)).collect()
    }

    /// A room's member user ids after `after` (in id order), at most `limit`: for walking
    /// every member of a big room in resumable pages.
    pub async fn member_ids_after(
        &self,
        room_id: Id,
        after: Option<Id>,
        limit: i64,
    ) -> Result<Vec<Id>> {
        let rows = sqlx::query(
            "SELECT user_id FROM memberships WHERE room_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3",
        )
        .bind(room_id.to_hex())
        .bind(after.map(|a| a.to_hex()).unwrap_or_default())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| rows::id(r, "user_id")).collect()
    }

    /// The highest message sequence number in the room (0 when empty).
    pub async fn last_message_seq(&self, room_id: Id) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(seq) AS seq FROM messages WHERE room_id = $1")
            .bind(room_id.to_hex())
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get::<Option<i64>, _>("seq")?.unwrap_or(0))
    }
}

/// The unique key of the one-to-one room between two users, whichever order they come in.
fn one_to_one_key(a: Id, b: Id) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{x}:{y}")
}

impl WriteTx {
    /// Adds a room; [`StoreError::Conflict`] if its URI (or the one-to-one pair) is taken.
    /// For one-to-one rooms pass both users.
    pub async fn insert_room(&mut self, room: &Room, one_to_one: Option<(Id, Id)>) -> Result<()> {
        sqlx::query(
            "INSERT INTO rooms (id, community_id, uri, uri_lower, one_to_one_key, name, topic, kind, avatar_url, noindex, member_count, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11)",
        )
        .bind(room.id.to_hex())
        .bind(room.group_id.map(|g| g.to_hex()))
        .bind(room.uri.clone())
        .bind(room.uri.as_ref().map(|u| u.to_lowercase()))
        .bind(one_to_one.map(|(a, b)| one_to_one_key(a, b)))
        .bind(&room.name)
        .bind(&room.topic)
        .bind(room.kind.as_str())
        .bind(room.avatar_url.clone())
        .bind(i64::from(room.noindex))
        .bind(room.created_at)
        .execute(&mut *self.conn)
        .await
        .map_err(StoreError::conflict_on("room"))?;
        Ok(())
    }

    /// Saves a room's name, topic, kind, avatar and noindex.
    pub async fn update_room(&mut self, room: &Room) -> Result<()> {
        self.access_changed = true;
        sqlx::query("UPDATE rooms SET name = $2, topic = $3, kind = $4, avatar_url = $5, noindex = $6 WHERE id = $1")
            .bind(room.id.to_hex())
            .bind(&room.name)
            .bind(&room.topic)
            .bind(room.kind.as_str())
            .bind(room.avatar_url.clone())
            .bind(i64::from(room.noindex))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Deletes a room and everything in it.
    pub async fn delete_room(&mut self, room_id: Id) -> Result<()> {
        self.access_changed = true;
        let id = room_id.to_hex();
        for sql in [
            "DELETE FROM reactions WHERE message_id IN (SELECT id FROM messages WHERE room_id = $1)",
            "DELETE FROM mentions WHERE room_id = $1",
            "DELETE FROM messages WHERE room_id = $1",
            "DELETE FROM files WHERE room_id = $1",
            "DELETE FROM read_marks WHERE room_id = $1",
            "DELETE FROM virtual_read_marks WHERE room_id = $1",
            "DELETE FROM virtual_memberships WHERE room_id = $1",
            "DELETE FROM memberships WHERE room_id = $1",
            "DELETE FROM bans WHERE room_id = $1",
            "DELETE FROM virtual_bans WHERE room_id = $1",
            "DELETE FROM rooms WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&id).execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    /// Adds a membership (reading starts at the room's newest message); false if already a member.
    pub async fn insert_membership(&mut self, m: &Membership) -> Result<bool> {
        self.access_changed = true;
        let done = sqlx::query(
            "INSERT INTO memberships (room_id, user_id, role, last_read_seq, favourite, joined_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id, user_id) DO NOTHING",
        )
        .bind(m.room_id.to_hex())
        .bind(m.user_id.to_hex())
        .bind(m.role.as_str())
        .bind(m.last_read_seq)
        .bind(i64::from(m.favourite))
        .bind(m.joined_at)
        .execute(&mut *self.conn)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.add_member_count(m.room_id, 1).await?;
        self.move_read_mark(m.room_id, None, Some(m.last_read_seq))
            .await?;
        Ok(true)
    }

    /// Removes a membership; false if they were not a member.
    pub async fn delete_membership(&mut self, room_id: Id, user_id: Id) -> Result<bool> {
        self.access_changed = true;
        let row = sqlx::query(
            "DELETE FROM memberships WHERE room_id = $1 AND user_id = $2 RETURNING last_read_seq",
        )
        .bind(room_id.to_hex())
        .bind(user_id.to_hex())
        .fetch_optional(&mut *self.conn)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let last_read: i64 = row.try_get("last_read_seq")?;
        self.add_member_count(room_id, -1).await?;
        self.move_read_mark(room_id, Some(last_read), None).await?;
        Ok(true)
    }

    /// Lists somebody from another network among a room's members; false if they were
    /// listed already. They count in the room's member count.
    pub async fn insert_virtual_membership(
        &mut self,
        room_id: Id,
        virtual_id: Id,
        joined_at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO virtual_memberships (room_id, virtual_user_id, joined_at) VALUES ($1, $2, $3) \
             ON CONFLICT (room_id, virtual_user_id) DO NOTHING",
        )
        .bind(room_id.to_hex())
        .bind(virtual_id.to_hex())
        .bind(joined_at)
        .execute(&mut *self.conn)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.add_member_count(room_id, 1).await?;
        Ok(true)
    }

    /// Takes somebody from another network off a room's members; false if they were not
    /// listed.
    pub async fn delete_virtual_membership(&mut self, room_id: Id, virtual_id: Id) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM virtual_memberships WHERE room_id = $1 AND virtual_user_id = $2",
        )
        .bind(room_id.to_hex())
        .bind(virtual_id.to_hex())
        .execute(&mut *self.conn)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.add_member_count(room_id, -1).await?;
        Ok(true)
    }

    /// Changes a member's role.
    pub async fn set_role(&mut self, room_id: Id, user_id: Id, role: Role) -> Result<bool> {
        self.access_changed = true;
        let done =
            sqlx::query("UPDATE memberships SET role = $3 WHERE room_id = $1 AND user_id = $2")
                .bind(room_id.to_hex())
                .bind(user_id.to_hex())
                .bind(role.as_str())
                .execute(&mut *self.conn)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks or unmarks a room as one of the user's favourites.
    pub async fn set_favourite(
        &mut self,
        room_id: Id,
        user_id: Id,
        favourite: bool,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE memberships SET favourite = $3 WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id.to_hex())
        .bind(user_id.to_hex())
        .bind(i64::from(favourite))
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Bans a user from a room (removing their membership).
    pub async fn insert_ban(
        &mut self,
        room_id: Id,
        user_id: Id,
        at: i64,
        by: Option<Id>,
        reason: Option<&str>,
    ) -> Result<()> {
        self.access_changed = true;
        self.delete_membership(room_id, user_id).await?;
        sqlx::query("INSERT INTO bans (room_id, user_id, banned_at, banned_by, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, user_id) DO NOTHING")
            .bind(room_id.to_hex())
            .bind(user_id.to_hex())
            .bind(at)
            .bind(by.map(|b| b.to_hex()))
            .bind(reason.map(str::to_string))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Lifts a ban; false if there was none.
    pub async fn delete_ban(&mut self, room_id: Id, user_id: Id) -> Result<bool> {
        self.access_changed = true;
        let done = sqlx::query("DELETE FROM bans WHERE room_id = $1 AND user_id = $2")
            .bind(room_id.to_hex())
            .bind(user_id.to_hex())
            .execute(&mut *self.conn)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Moves the read marks of people of other networks forward (`(room, virtual user,
    /// seq)`, a bridge's batch of read receipts); a mark that is not ahead of where it is
    /// changes nothing. Answers how many moved.
    pub async fn advance_virtual_reads(&mut self, marks: &[(Id, Id, i64)]) -> Result<usize> {
        let mut moved = 0;
        for &(room_id, virtual_user_id, seq) in marks {
            let row = sqlx::query(
                "SELECT last_read_seq FROM virtual_read_marks WHERE room_id = $1 AND virtual_user_id = $2",
            )
            .bind(room_id.to_hex())
            .bind(virtual_user_id.to_hex())
            .fetch_optional(&mut *self.conn)
            .await?;
            let old: Option<i64> = row.map(|r| r.try_get("last_read_seq")).transpose()?;
            if old.is_some_and(|old| seq <= old) {
                continue;
            }
            sqlx::query(
                "INSERT INTO virtual_read_marks (room_id, virtual_user_id, last_read_seq) VALUES ($1, $2, $3) \
                 ON CONFLICT (room_id, virtual_user_id) DO UPDATE SET last_read_seq = excluded.last_read_seq",
            )
            .bind(room_id.to_hex())
            .bind(virtual_user_id.to_hex())
            .bind(seq)
            .execute(&mut *self.conn)
            .await?;
            self.move_read_mark(room_id, old, Some(seq)).await?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Moves a member's read mark forward to `seq`; returns false (and changes nothing) if it
    /// is not ahead of where they already are.
    pub async fn advance_read(&mut self, room_id: Id, user_id: Id, seq: i64) -> Result<bool> {
        let row = sqlx::query(
            "SELECT last_read_seq FROM memberships WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id.to_hex())
        .bind(user_id.to_hex())
        .fetch_optional(&mut *self.conn)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let old: i64 = row.try_get("last_read_seq")?;
        if seq <= old {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE memberships SET last_read_seq = $3 WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id.to_hex())
        .bind(user_id.to_hex())
        .bind(seq)
        .execute(&mut *self.conn)
        .await?;
        self.move_read_mark(room_id, Some(old), Some(seq)).await?;
        Ok(true)
    }

    async fn add_member_count(&mut self, room_id: Id, delta: i64) -> Result<()> {
        self.access_changed = true;
        sqlx::query("UPDATE rooms SET member_count = member_count + $2 WHERE id = $1")
            .bind(room_id.to_hex())
            .bind(delta)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Keeps the read-marks histogram in step with one member's read mark moving.
    async fn move_read_mark(
        &mut self,
        room_id: Id,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<()> {
        if let Some(from) = from {
            sqlx::query(
                "UPDATE read_marks SET readers = readers - 1 WHERE room_id = $1 AND seq = $2",
            )
            .bind(room_id.to_hex())
            .bind(from)
            .execute(&mut *self.conn)
            .await?;
            sqlx::query("DELETE FROM read_marks WHERE room_id = $1 AND seq = $2 AND readers <= 0")
                .bind(room_id.to_hex())
                .bind(from)
                .execute(&mut *self.conn)
                .await?;
        }
        if let Some(to) = to {
            sqlx::query(
                "INSERT INTO read_marks (room_id, seq, readers) VALUES ($1, $2, 1) \
                 ON CONFLICT (room_id, seq) DO UPDATE SET readers = read_marks.readers + 1",
            )
            .bind(room_id.to_hex())
            .bind(to)
            .execute(&mut *self.conn)
            .await?;
        }
        Ok(())
    }
}

/// A user row joined with their membership's role (`m_role`).
fn user_with_role(r: &sqlx::any::AnyRow) -> Result<(User, Role)> {
    let role: String = r.try_get("m_role")?;
    let role =
        Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?;
    Ok((rows::user(r)?, role))
}
