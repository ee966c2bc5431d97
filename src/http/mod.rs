//! HTTP: the accept loop and connections ([`server`]), the one `match` over method and path
//! ([`router`]), reading requests ([`request`]) and building responses ([`response`]), optional
//! authentication ([`auth`]), CORS ([`cors`]) and TLS ([`tls`]).

pub(crate) mod auth;
pub(crate) mod cors;
pub mod request;
pub(crate) mod response;
pub(crate) mod router;
pub(crate) mod server;
pub(crate) mod tls;
