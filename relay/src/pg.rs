//! A blocking PostgreSQL client whose every round trip has a deadline.
//!
//! `postgres`, tokio-postgres's own blocking wrapper, waits for an answer for ever. Behind a
//! half-open connection (a middlebox that still acknowledges what the node sends but drops
//! the server's answers) a query outside a transaction is never given up: no server-side
//! timeout closes an idle session, and keepalives are answered by the middlebox. One such
//! query held a node's core thread, and so every send through that node, until restart.
//!
//! This client runs tokio-postgres on a runtime of its own, as `postgres` does, but gives up
//! after [`ROUND_TRIP`]: the server's own `statement_timeout` plus a margin, so nothing the
//! server would still answer arrives later. The client is then broken ([`Client::is_closed`]):
//! its owner drops it, which closes the socket, and connects again.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;
pub use tokio_postgres::{Config, Row, SimpleQueryMessage};
use tokio_postgres::{NoTls, types::ToSql};

/// The longest a round trip may take: 15 s of `statement_timeout` (set per session) and 2 s
/// for the network.
pub const ROUND_TRIP: Duration = Duration::from_secs(17);

/// Why a call failed.
#[derive(Debug)]
pub enum Error {
    /// The server (or the connection) said so.
    Db(tokio_postgres::Error),
    /// No answer within [`ROUND_TRIP`]; the connection is broken.
    Deadline,
    /// The client's runtime could not be made.
    Runtime(std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Db(e) => e.fmt(f),
            Error::Deadline => write!(f, "no answer from PostgreSQL within {ROUND_TRIP:?}"),
            Error::Runtime(e) => write!(f, "cannot start the PostgreSQL client: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Db(e) => Some(e),
            Error::Deadline => None,
            Error::Runtime(e) => Some(e),
        }
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Waits for `f` on `rt`, at most [`ROUND_TRIP`]; marks the connection broken if it passed.
fn wait<T>(
    rt: &Runtime,
    broken: &mut bool,
    f: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Error> {
    // The timer is made inside the runtime (it needs its clock).
    match rt.block_on(async { tokio::time::timeout(ROUND_TRIP, f).await }) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(Error::Db(e)),
        Err(_) => {
            *broken = true;
            Err(Error::Deadline)
        }
    }
}

/// A connection, driven on its own single-threaded runtime while a call waits.
pub struct Client {
    rt: Runtime,
    client: tokio_postgres::Client,
    broken: bool,
}

impl Client {
    /// Connects (the whole handshake within [`ROUND_TRIP`]). Call it off any async runtime.
    pub fn connect(config: &Config) -> Result<Client, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let mut broken = false;
        let (client, connection) = wait(&rt, &mut broken, config.connect(NoTls))?;
        // Polled whenever a call waits on `rt`; dropped (closing the socket) with it.
        rt.spawn(connection);
        Ok(Client { rt, client, broken })
    }

    /// The connection is gone, or a round trip passed its deadline.
    pub fn is_closed(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        wait(&self.rt, &mut self.broken, self.client.execute(sql, params))
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        wait(&self.rt, &mut self.broken, self.client.query(sql, params))
    }

    pub fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        wait(&self.rt, &mut self.broken, self.client.query_one(sql, params))
    }

    pub fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        wait(&self.rt, &mut self.broken, self.client.query_opt(sql, params))
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        wait(&self.rt, &mut self.broken, self.client.batch_execute(sql))
    }

    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        wait(&self.rt, &mut self.broken, self.client.simple_query(sql))
    }

    /// Begins a transaction; dropped without [`Transaction::commit`], it rolls back.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        let Client { rt, client, broken } = self;
        let tx = wait(rt, broken, client.transaction())?;
        Ok(Transaction { rt, broken, tx })
    }
}

/// A transaction on a [`Client`], with the same deadline per round trip.
pub struct Transaction<'a> {
    rt: &'a Runtime,
    broken: &'a mut bool,
    tx: tokio_postgres::Transaction<'a>,
}

impl Transaction<'_> {
    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        wait(self.rt, self.broken, self.tx.execute(sql, params))
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        wait(self.rt, self.broken, self.tx.query(sql, params))
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        wait(self.rt, self.broken, self.tx.batch_execute(sql))
    }

    pub fn commit(self) -> Result<(), Error> {
        let Transaction { rt, broken, tx } = self;
        wait(rt, broken, tx.commit())
    }
}
