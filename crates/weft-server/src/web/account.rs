//! Signing in and out with a local account, and the personal access token page. A web
//! session is an ordinary token kept in an HttpOnly cookie; forms that change something must
//! come from weft's own pages (checked by `Origin`), so another site cannot submit them.

use std::fmt::Write;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use weft_chat::Actor;
use weft_core::Id;

use super::html::{self, Head, esc};
use super::room::server_error;
use super::{is_https, page, session_cookie_header, viewer};
use crate::AppState;
use crate::extract::same_origin;

/// The label of tokens created by signing in.
const SESSION_TOKEN_NAME: &str = "web session";

/// Only local paths are followed after signing in, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn forbidden(actor: &Actor) -> Response {
    page(
        StatusCode::FORBIDDEN,
        html::layout(
            &Head::new("Refused"),
            actor,
            "<main class=\"narrow\"><h1>Refused</h1><p>This form must be sent from weft's own pages.</p></main>",
        ),
    )
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let actor = viewer(&state, &headers).await;
    let next = safe_next(query.next.as_deref());
    if actor.user.is_some() {
        return redirect(&next);
    }
    login_form(&actor, StatusCode::OK, "", &next, None)
}

fn login_form(
    actor: &Actor,
    status: StatusCode,
    username: &str,
    next: &str,
    error: Option<&str>,
) -> Response {
    let mut content = String::from("<main id=\"main\" class=\"narrow\"><h1>Sign in</h1>");
    if let Some(e) = error {
        let _ = write!(content, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    let _ = write!(
        content,
        "<form method=\"post\" action=\"/login\" class=\"stack\" id=\"login-form\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>Username <input name=\"username\" id=\"username\" autocomplete=\"username\" required value=\"{user}\" autofocus></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form></main>",
        next = esc(next),
        user = esc(username),
    );
    let mut head = Head::new("Sign in");
    head.noindex = true;
    page(status, html::layout(&head, actor, &content))
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: checks the password, starts a session, goes back where the visitor was.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<crate::ClientKey>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let anonymous = Actor::anonymous();
    if !same_origin(&headers) {
        return forbidden(&anonymous);
    }
    let next = safe_next(form.next.as_deref());
    // Wrong passwords count against the address, before the (deliberately slow) hash check.
    if let Some(axum::Extension(client)) = &client
        && !state.limiter.may_try_credentials(client)
    {
        return login_form(
            &anonymous,
            StatusCode::TOO_MANY_REQUESTS,
            &form.username,
            &next,
            Some("Too many failed sign-ins from your address. Wait a minute and try again."),
        );
    }
    let user = match state
        .chat
        .authenticate_password(form.username.trim(), &form.password)
        .await
    {
        Ok(user) => user,
        Err(weft_chat::ChatError::Unauthorized) => {
            if let Some(axum::Extension(client)) = &client {
                state.limiter.record_failure(client);
            }
            return login_form(
                &anonymous,
                StatusCode::UNAUTHORIZED,
                &form.username,
                &next,
                Some("Wrong username or password."),
            );
        }
        Err(e) => return server_error(&anonymous, e),
    };
    let secret = match state
        .chat
        .create_token(user.id, SESSION_TOKEN_NAME, false)
        .await
    {
        Ok((_, secret)) => secret,
        Err(e) => return server_error(&anonymous, e),
    };
    let mut response = redirect(&next);
    response.headers_mut().insert(
        SET_COOKIE,
        session_cookie_header(&secret, is_https(&headers)),
    );
    response
}

/// `POST /logout`: revokes the session's token and forgets the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let actor = viewer(&state, &headers).await;
    if !same_origin(&headers) {
        return forbidden(&actor);
    }
    if let Some(token) = &actor.token
        && let Err(e) = state.chat.revoke_token(&actor, token.id).await
    {
        tracing::warn!(error = %e, "could not revoke a session token");
    }
    let mut response = redirect("/");
    response
        .headers_mut()
        .insert(SET_COOKIE, session_cookie_header("", is_https(&headers)));
    response
}

/// `GET /settings/tokens`.
pub async fn tokens_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let actor = viewer(&state, &headers).await;
    tokens_view(&state, &actor, None, None).await
}

async fn tokens_view(
    state: &AppState,
    actor: &Actor,
    created: Option<(&str, &str)>,
    error: Option<&str>,
) -> Response {
    let Some(user) = &actor.user else {
        return redirect("/login?next=/settings/tokens");
    };
    let tokens = match state.chat.views().tokens_of(user.id).await {
        Ok(tokens) => tokens,
        Err(e) => return server_error(actor, e.into()),
    };
    let mut content = String::from(
        "<main id=\"main\" class=\"narrow\"><h1>Personal access tokens</h1>\
         <p>Tokens let bots and scripts use the API as you: send <code>Authorization: Bearer TOKEN</code>.</p>",
    );
    if let Some(e) = error {
        let _ = write!(content, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    if let Some((name, secret)) = created {
        let _ = write!(
            content,
            "<div class=\"notice\" role=\"status\"><p>Token <strong>{}</strong> created. Copy it now: it is not shown again.</p>\
             <p><code id=\"new-token\" class=\"secret\">{}</code></p></div>",
            esc(name),
            esc(secret)
        );
    }
    content.push_str(
        "<form method=\"post\" action=\"/settings/tokens\" class=\"inline-form\" id=\"token-form\">\
         <label>Name <input name=\"name\" id=\"token-name\" required maxlength=\"128\" placeholder=\"e.g. my bot\"></label>\
         <button type=\"submit\">Create token</button></form>",
    );
    if tokens.is_empty() {
        content.push_str("<p class=\"empty\">You have no tokens.</p>");
    } else {
        content.push_str("<table class=\"tokens\" id=\"tokens\"><thead><tr><th>Name</th><th>Created</th><th></th></tr></thead><tbody>");
        for t in &tokens {
            let current = actor.token.as_ref().is_some_and(|c| c.id == t.id);
            let (iso, _) = html::time(t.created_at);
            let _ = write!(
                content,
                "<tr><td>{name}{bridge}{cur}</td><td><time datetime=\"{iso}\">{date}</time></td>\
                 <td><form method=\"post\" action=\"/settings/tokens/{id}/revoke\" class=\"inline\">\
                 <button type=\"submit\" class=\"secondary\">Revoke</button></form></td></tr>",
                name = esc(&t.name),
                bridge = if t.bridge {
                    " <span class=\"badge\">bridge</span>"
                } else {
                    ""
                },
                cur = if current {
                    " <span class=\"badge\">this session</span>"
                } else {
                    ""
                },
                date = esc(iso.get(..10).unwrap_or_default()),
                id = t.id,
            );
        }
        content.push_str("</tbody></table>");
    }
    content.push_str("</main>");
    let mut head = Head::new("Tokens");
    head.noindex = true;
    page(StatusCode::OK, html::layout(&head, actor, &content))
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
}

/// `POST /settings/tokens`: creates a token and shows its secret once.
pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let actor = viewer(&state, &headers).await;
    if !same_origin(&headers) {
        return forbidden(&actor);
    }
    let Some(user) = &actor.user else {
        return redirect("/login?next=/settings/tokens");
    };
    let name = form.name.trim();
    if name.is_empty() {
        return tokens_view(&state, &actor, None, Some("Give the token a name.")).await;
    }
    match state.chat.create_token(user.id, name, false).await {
        Ok((_, secret)) => tokens_view(&state, &actor, Some((name, &secret)), None).await,
        Err(weft_chat::ChatError::Invalid(e)) => tokens_view(&state, &actor, None, Some(&e)).await,
        Err(e) => server_error(&actor, e),
    }
}

/// `POST /settings/tokens/{id}/revoke`. Revoking the session's own token signs out.
pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
) -> Response {
    let actor = viewer(&state, &headers).await;
    if !same_origin(&headers) {
        return forbidden(&actor);
    }
    if actor.user.is_none() {
        return redirect("/login?next=/settings/tokens");
    }
    let Ok(token_id) = token_id.parse::<Id>() else {
        return tokens_view(&state, &actor, None, Some("No such token.")).await;
    };
    match state.chat.revoke_token(&actor, token_id).await {
        Ok(()) => redirect("/settings/tokens"),
        Err(weft_chat::ChatError::NotFound(_)) => {
            tokens_view(&state, &actor, None, Some("No such token.")).await
        }
        Err(e) => server_error(&actor, e),
    }
}
