//! Integration tests of occ-serve: the server over real HTTP with tiny synthetic weights and with a
//! gated fake reader (for the queue, disconnects and draining), and PDF pages.

mod client;
mod common;
mod python;
mod server;
mod v2;
