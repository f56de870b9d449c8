//! Accounts, passwords and personal access tokens.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use weft_core::{Event, Id, Origin, Token, User, validate};

use crate::error::from_write;
use crate::{Actor, Chat, ChatError, Result};

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login and mention name.
    pub username: String,
    /// Shown name (defaults to the username).
    pub display_name: Option<String>,
    /// Password for signing in to the web app (none: token-only account, e.g. a bot).
    pub password: Option<String>,
    /// Site administrator.
    pub site_admin: bool,
}

/// The stored form of a token secret: its SHA-256, so a database leak reveals no tokens.
pub(crate) fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Chat {
    /// Creates an account.
    pub async fn create_user(&self, new: NewUser) -> Result<User> {
        validate::username(&new.username)?;
        let display_name = new.display_name.unwrap_or_else(|| new.username.clone());
        validate::short_text("display name", &display_name, 128)?;
        let password_hash = match new.password {
            Some(pw) => Some(hash_password(&pw)?),
            None => None,
        };
        let user = User {
            id: Id::generate(),
            username: new.username,
            display_name,
            avatar_url: None,
            site_admin: new.site_admin,
            created_at: weft_core::now_millis(),
        };
        let stored = user.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_user(&stored, password_hash.as_deref()).await?;
                    tx.append(&Origin::local(), &Event::UserCreated { user_id: stored.id })
                        .await?;
                    Ok(())
                })
            })
            .await
            .map_err(|e| match from_write(e) {
                ChatError::Conflict(_) => {
                    ChatError::Conflict(format!("username {}", user.username))
                }
                other => other,
            })?;
        Ok(user)
    }

    /// Creates a personal access token for a user; returns the record and the secret, which
    /// is shown once and never stored.
    pub async fn create_token(
        &self,
        user_id: Id,
        name: &str,
        bridge: bool,
    ) -> Result<(Token, String)> {
        validate::short_text("token name", name, 128)?;
        let secret = hex::encode(rand::random::<[u8; 20]>());
        let token = Token {
            id: Id::generate(),
            user_id,
            name: name.to_string(),
            bridge,
            created_at: weft_core::now_millis(),
        };
        let stored = token.clone();
        let hash = token_hash(&secret);
        self.store()
            .write(move |tx| Box::pin(async move { tx.insert_token(&stored, &hash).await }))
            .await
            .map_err(from_write)?;
        Ok((token, secret))
    }

    /// Revokes one of the caller's tokens.
    pub async fn revoke_token(&self, actor: &Actor, token_id: Id) -> Result<()> {
        let user_id = actor.require_user()?.id;
        let found = self
            .store()
            .write(move |tx| Box::pin(async move { tx.delete_token(user_id, token_id).await }))
            .await
            .map_err(from_write)?;
        self.inner
            .tokens
            .forget(|actor| actor.token.as_ref().is_some_and(|t| t.id == token_id));
        if found {
            Ok(())
        } else {
            Err(ChatError::NotFound("token"))
        }
    }

    /// The actor a bearer token stands for; [`ChatError::Unauthorized`] if it is unknown.
    /// Answers are cached for a few seconds (every API request authenticates); revoking a
    /// token here takes effect at once, on other instances within [`TOKEN_CACHE_TTL`].
    pub async fn authenticate_token(&self, secret: &str) -> Result<Actor> {
        let hash = token_hash(secret);
        if let Some(actor) = self.inner.tokens.get(&hash) {
            return Ok(actor);
        }
        let (token, user) = self
            .store()
            .token_by_hash(&hash)
            .await?
            .ok_or(ChatError::Unauthorized)?;
        let actor = Actor {
            user: Some(user),
            token: Some(token),
            origin: Origin::local(),
            system: false,
        };
        self.inner.tokens.put(hash, actor.clone());
        Ok(actor)
    }

    /// Checks a username and password.
    pub async fn authenticate_password(&self, username: &str, password: &str) -> Result<User> {
        let Some((user, Some(hash))) = self.store().user_with_password(username).await? else {
            // Hash anyway so that unknown users take as long as wrong passwords.
            let _ = hash_password(password);
            return Err(ChatError::Unauthorized);
        };
        let parsed = PasswordHash::new(&hash).map_err(|e| ChatError::Internal(e.to_string()))?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .map_err(|_| ChatError::Unauthorized)?;
        Ok(user)
    }

    /// A user by id.
    pub async fn user(&self, id: Id) -> Result<User> {
        self.store()
            .user(id)
            .await?
            .ok_or(ChatError::NotFound("user"))
    }

    /// A user by username.
    pub async fn user_by_username(&self, username: &str) -> Result<User> {
        self.store()
            .user_by_username(username)
            .await?
            .ok_or(ChatError::NotFound("user"))
    }

    /// Changes the caller's display name and avatar.
    pub async fn update_profile(
        &self,
        actor: &Actor,
        display_name: Option<String>,
        avatar_url: Option<Option<String>>,
    ) -> Result<User> {
        let mut user = actor.require_user()?.clone();
        let current = self.user(user.id).await?;
        user.display_name = current.display_name;
        user.avatar_url = current.avatar_url;
        if let Some(name) = display_name {
            validate::short_text("display name", &name, 128)?;
            if name.trim().is_empty() {
                return Err(ChatError::Invalid("display name must not be empty".into()));
            }
            user.display_name = name;
        }
        if let Some(avatar) = avatar_url {
            if let Some(url) = &avatar {
                validate::avatar_url(url)?;
            }
            user.avatar_url = avatar;
        }
        let stored = user.clone();
        let origin = actor.origin.clone();
        self.store()
            .write(move |tx| {
                Box::pin(async move {
                    tx.update_user_profile(&stored).await?;
                    tx.append(&origin, &Event::UserUpdated { user_id: stored.id })
                        .await?;
                    Ok(())
                })
            })
            .await
            .map_err(from_write)?;
        let user_id = user.id;
        self.inner
            .tokens
            .forget(|actor| actor.user.as_ref().is_some_and(|u| u.id == user_id));
        Ok(user)
    }
}

/// How long an authenticated token is remembered.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Recently authenticated tokens, by the hash of their secret.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Actor, std::time::Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Actor> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(actor, _)| actor.clone())
    }

    fn put(&self, hash: String, actor: Actor) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= 10_000 {
            entries.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
        }
        entries.insert(hash, (actor, std::time::Instant::now()));
    }

    /// Drops cached actors that match (a revoked token, a changed user).
    pub(crate) fn forget(&self, matches: impl Fn(&Actor) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (actor, _)| !matches(actor));
    }
}

fn hash_password(password: &str) -> Result<String> {
    if password.len() < 8 {
        return Err(ChatError::Invalid(
            "password must be at least 8 characters".into(),
        ));
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| ChatError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ChatError::Internal(e.to_string()))
}
