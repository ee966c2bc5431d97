//! HTTP: the accept loop and connections ([`server`]), the one `match` over method and path
//! ([`router`]), reading requests ([`request`]) and building responses ([`response`]), optional
//! authentication ([`auth`]) and its cookie ([`cookie`]), CORS ([`cors`]), TLS ([`tls`]) and
//! the database's health as `/readyz` reports it ([`health`]), and what makes an HTTP/2
//! connection idle ([`idle`]).

pub(crate) mod auth;
pub(crate) mod cookie;
pub(crate) mod cors;
pub(crate) mod health;
pub(crate) mod idle;
pub mod request;
pub(crate) mod response;
pub(crate) mod router;
pub(crate) mod server;
pub(crate) mod tls;
