//! Integration tests against a real PostgreSQL: one throwaway cluster (pg-harness) for the
//! whole binary, a fresh database per test.

mod common;
mod connect;
mod fingerprint;
mod migrations;
mod provision;
mod stamp;
mod tls;
