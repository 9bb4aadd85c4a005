//! Everything that talks to PostgreSQL; the only module that names sqlx.
//!
//! - [`connect`]: connections with promoter's application name and the
//!   environment's timeouts; URLs are only ever shown redacted.
//! - [`lock`]: the session-level advisory lock held for a whole run.
//! - [`ledger`]: the ledger table: created on first use, read, appended to.
//! - [`fingerprint`]: a hash of the normalized catalog.
//! - [`executor`]: runs a bundle's scripts statement by statement.
//! - [`admin`]: whole databases: pg_dump/pg_restore, create, swap, drop.

pub mod admin;
mod batch;
pub mod conninfo;
pub mod executor;
pub mod fingerprint;
pub mod guard;
pub mod ledger;
pub mod lock;
pub mod policy;

use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use conninfo::redact;

/// Errors talking to a database; each names the environment.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{env}: invalid database_url {url}: {message}")]
    BadUrl {
        env: String,
        url: String,
        message: String,
    },
    /// The environment's URL cannot even be formed (an unset `${VAR}`).
    #[error("{0}")]
    Unconfigured(String),
    #[error("{env}: cannot connect to {url}: {message}")]
    Connect {
        env: String,
        url: String,
        message: String,
    },
    #[error("{env}: {message}")]
    Query { env: String, message: String },
    #[error(
        "{env}: another promoter is applying to this database (lock held by pid {pid}, application {application}, user {user}, since {since}); waited {waited}s"
    )]
    Locked {
        env: String,
        pid: i32,
        application: String,
        user: String,
        since: String,
        waited: u64,
    },
    #[error("{env}: {schema}.ledger row #{seq} is malformed: {reason}")]
    MalformedLedger {
        env: String,
        schema: String,
        seq: i64,
        reason: String,
    },
    #[error(
        "{env}: the ledger {schema}.ledger has layout version {found}; this promoter knows up to {known}. Upgrade promoter"
    )]
    LedgerTooNew {
        env: String,
        schema: String,
        found: i32,
        known: i32,
    },
}

impl DbError {
    /// A failed query in environment `env`.
    pub fn query(env: &str, e: impl IntoMessage) -> Self {
        Self::Query {
            env: env.to_owned(),
            message: e.into_message(),
        }
    }
}

/// How an error becomes the text of a [`DbError`].
pub trait IntoMessage {
    fn into_message(self) -> String;
}

impl IntoMessage for String {
    fn into_message(self) -> String {
        self
    }
}

impl IntoMessage for sqlx::Error {
    fn into_message(self) -> String {
        describe(&self)
    }
}

/// A database error as people should read it: `[SQLSTATE] message`. sqlx's
/// own text ends in " at line N", the line in PostgreSQL's C source, which
/// next to a changeset reads like a line of the user's script.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("[{code}] {}", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// Per-connection settings from `environments.yaml`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL's `statement_timeout`, passed on as given.
    pub statement_timeout: Option<String>,
    /// PostgreSQL's `lock_timeout`, passed on as given.
    pub lock_timeout: Option<String>,
    /// How long to wait for the connection itself.
    pub connect_timeout: Duration,
}

/// Opens a connection to environment `env`.
pub async fn connect(env: &str, url: &str, settings: &Settings) -> Result<PgConnection, DbError> {
    connect_database(env, url, None, settings).await
}

/// Opens a connection to another database (`database`) of the cluster
/// behind environment `env`'s URL.
pub async fn connect_database(
    env: &str,
    url: &str,
    database: Option<&str>,
    settings: &Settings,
) -> Result<PgConnection, DbError> {
    let shown = redact(url);
    let mut options = conninfo::parse(url).map_err(|message| DbError::BadUrl {
        env: env.to_owned(),
        url: shown.clone(),
        message: strip_url(&message, url, &shown),
    })?;
    if let Some(db) = database {
        options = options.database(db);
    }
    let mut options = options
        .application_name(&format!("promoter {env}"))
        // An environment's own connection keeps promoter's queries prepared
        // (parsing and planning them was 40 % of the server's time in a run
        // of many small changesets); the executor vets them after every
        // script, so a script cannot swap one for its own (see
        // `executor::vet_statements`). Connections to other databases of
        // the cluster (scratch copies, branches being built) prepare nothing.
        .statement_cache_capacity(if database.is_none() { 64 } else { 0 });
    let mut params: Vec<(&str, &str)> = Vec::new();
    if let Some(t) = &settings.statement_timeout {
        params.push(("statement_timeout", t));
    }
    if let Some(t) = &settings.lock_timeout {
        params.push(("lock_timeout", t));
    }
    if !params.is_empty() {
        options = options.options(params);
    }
    let result = tokio::time::timeout(
        settings.connect_timeout,
        PgConnection::connect_with(&options),
    )
    .await
    .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
    result.map_err(|e| DbError::Connect {
        env: env.to_owned(),
        url: shown.clone(),
        message: match e {
            sqlx::Error::PoolTimedOut => {
                format!(
                    "timed out after {} s",
                    settings.connect_timeout.as_secs_f64()
                )
            }
            sqlx::Error::Tls(e) => strip_url(&format!("TLS: {e}"), url, &shown),
            other => strip_url(&describe(&other), url, &shown),
        },
    })
}

/// Never let a password inside an error message through.
fn strip_url(message: &str, url: &str, shown: &str) -> String {
    message.replace(url, shown)
}

/// A connection to one environment's database.
pub type Connection = PgConnection;

/// A transaction on a [`Connection`].
pub type Transaction<'c> = sqlx::Transaction<'c, sqlx::Postgres>;

/// Begins a transaction.
pub async fn begin<'c>(conn: &'c mut PgConnection, env: &str) -> Result<Transaction<'c>, DbError> {
    conn.begin().await.map_err(|e| DbError::query(env, e))
}

/// Commits a transaction.
pub async fn commit(tx: Transaction<'_>, env: &str) -> Result<(), DbError> {
    tx.commit()
        .await
        .map_err(|e| DbError::query(env, format!("COMMIT: {}", describe(&e))))
}

/// The server process serving `conn` (what a cancel request names).
pub async fn backend_pid(conn: &mut PgConnection, env: &str) -> Result<i32, DbError> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .map_err(|e| DbError::query(env, e))
}

/// What identifies the database behind a connection wherever its URL
/// points: the cluster's system identifier and the database name (the
/// environment's name stands in when the role may not read the identifier).
pub async fn identity(conn: &mut PgConnection, env: &str) -> String {
    let id: Result<String, _> = sqlx::query_scalar(
        "SELECT system_identifier::text || '/' || current_database() FROM pg_catalog.pg_control_system()",
    )
    .fetch_one(&mut *conn)
    .await;
    match id {
        Ok(id) => id,
        Err(_) => format!("env-{env}"),
    }
}

/// Closes a connection politely, ignoring errors (it may already be gone).
pub async fn close(conn: PgConnection) {
    let _ = conn.close().await;
}
