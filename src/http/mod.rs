//! HTTP: the accept loop and connections ([`server`]), content negotiation ([`accept`]),
//! reading a JSON body ([`body`]), the routes ([`routes`]) and the router that dispatches them
//! ([`router`]), reading requests ([`request`]) and building responses ([`response`]), optional
//! authentication ([`auth`]) and its cookie ([`cookie`]), CORS ([`cors`]), TLS ([`tls`]) and
//! the database's health as `/readyz` reports it ([`health`]), what makes an HTTP/2
//! connection idle ([`idle`]), and the answers that refuse a request ([`refusal`]).

pub(crate) mod accept;
pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod cookie;
pub(crate) mod cors;
pub(crate) mod health;
pub(crate) mod idle;
pub(crate) mod refusal;
pub mod request;
pub(crate) mod response;
pub(crate) mod router;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod tls;
