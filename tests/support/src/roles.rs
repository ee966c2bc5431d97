//! Login roles as an operator creates them: each granted some of taskstream's group roles
//! (`taskstream_server`, `taskstream_writer`, created by the first migration of the cluster),
//! and the URL to log in with.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cluster::connect;

/// The group role of taskstream instances.
pub const SERVER: &str = "taskstream_server";

/// The group role of agents.
pub const WRITER: &str = "taskstream_writer";

/// Creates a new login role (trust authentication: no password) that is a member of `groups`,
/// on the cluster of `url` (whose user must be the superuser); returns `url` logged in as it.
pub async fn login(url: &str, groups: &[&str]) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("login_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let admin = connect(url).await;
    admin
        .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
        .await
        .expect("create a login role");
    for group in groups {
        admin
            .batch_execute(&format!("GRANT {group} TO {name}"))
            .await
            .expect("grant a group role");
    }
    as_user(url, &name)
}

/// `url` with its user replaced by `user`.
pub fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// The SQLSTATE of a failed statement (`None` for an error that is not PostgreSQL's).
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|code| code.code())
}
