//! The bytes on the wire, pure and free of I/O: how a frame is written ([`sse`]), how a stored
//! row becomes an event ([`event`]), and the resume position in each event's id ([`cursor`]).

pub mod cursor;
pub mod event;
pub mod sse;
