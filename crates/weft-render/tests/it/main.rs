//! Integration tests of the message renderer, as one test binary.

mod extraction;
mod safety;
mod snapshots;
