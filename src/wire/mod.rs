//! The bytes on the wire, pure and free of I/O: how a frame is written ([`sse`]), how a stored
//! row becomes an event ([`event`]), and the resume position in each event's id ([`cursor`];
//! [`multi_cursor`] for a stream of several tasks).

pub mod cursor;
pub mod event;
pub mod multi_cursor;
pub mod sse;
