//! promoter's integration tests: the real binary, in temp directories, with
//! real keys (gpg and promoter's own) and, where needed, real PostgreSQL.

mod baseline;
mod branch;
mod clone;
mod common;
mod corpus;
mod executor;
mod fingerprint;
mod fleet;
mod json_docs;
mod ledger_guard;
mod offline;
mod operator;
mod parity;
mod pipeline;
mod profile;
mod report;
mod snapshots;
mod trust;
