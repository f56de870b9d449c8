//! Integration tests of the HTTP API: the real application on 127.0.0.1:0 over a real store,
//! driven with a real HTTP client and WebSocket client.

mod harness;

mod api;
mod avatars;
mod errors;
mod faye;
mod files;
mod live;
mod messages;
mod moderation;
mod people;
mod rooms;
mod web;
