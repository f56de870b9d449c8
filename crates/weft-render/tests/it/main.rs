//! Integration tests of the message renderer, as one test binary.

mod extraction;
mod perf;
mod safety;
mod snapshots;
