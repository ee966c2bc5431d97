//! The private PostgreSQL: one cluster per test binary, started on first use, and a fresh
//! database in it for each test.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use taskstream::embedded_pg::Cluster;
use tokio_postgres::{Client, NoTls};

/// This test binary's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("test cluster: {e}")))
}

/// Connects to `url` and drives the connection in the background.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh database with the schema applied; returns its URL.
pub async fn fresh_database() -> String {
    let url = empty_database().await;
    taskstream::db::apply_schema(&url)
        .await
        .expect("apply schema");
    url
}

/// A fresh database without even the schema; returns its URL.
pub async fn empty_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = tokio::task::spawn_blocking(cluster)
        .await
        .expect("cluster thread");
    let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let admin = connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    cluster.url(&name)
}
