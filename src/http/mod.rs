//! HTTP: the accept loop and connections ([`server`]), the one `match` over method and path
//! ([`router`]), reading requests ([`request`]) and building responses ([`response`]), optional
//! authentication ([`auth`]), CORS ([`cors`]) and TLS ([`tls`]).

pub mod auth;
pub mod cors;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod tls;
