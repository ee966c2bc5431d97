//! Coalescing: the frames that are ready together leave as one write.

use bytes::{Bytes, BytesMut};

/// Frames are coalesced into chunks of up to about this many bytes before they go to the
/// socket, so a burst costs one write instead of one per event.
pub(super) const CHUNK_BYTES: usize = 32 * 1024;

/// The chunk being built. A lone shared frame is passed on as it is, without a copy (the
/// common case live: one event, many subscribers); from the second frame on they are copied
/// into one buffer.
#[derive(Debug, Default)]
pub(super) struct Coalescer {
    single: Option<Bytes>,
    chunk: BytesMut,
}

impl Coalescer {
    /// Adds a frame that others share.
    pub(super) fn push(&mut self, frame: &Bytes) {
        if self.single.is_none() && self.chunk.is_empty() {
            self.single = Some(frame.clone());
        } else {
            self.copy_single();
            self.chunk.extend_from_slice(frame);
        }
    }

    /// Adds bytes written in place by `write`.
    pub(super) fn write(&mut self, write: impl FnOnce(&mut BytesMut)) {
        self.copy_single();
        write(&mut self.chunk);
    }

    /// Whether the chunk should go out before more is added.
    pub(super) fn is_full(&self) -> bool {
        self.single.as_ref().map_or(self.chunk.len(), Bytes::len) >= CHUNK_BYTES
    }

    /// The chunk built so far, if any, leaving the coalescer empty.
    pub(super) fn take(&mut self) -> Option<Bytes> {
        if let Some(single) = self.single.take() {
            return Some(single);
        }
        (!self.chunk.is_empty()).then(|| self.chunk.split().freeze())
    }

    fn copy_single(&mut self) {
        if let Some(single) = self.single.take() {
            self.chunk.extend_from_slice(&single);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_frame_leaves_without_a_copy() {
        let frame = Bytes::from_static(b"id: 1\n\n");
        let mut coalescer = Coalescer::default();
        coalescer.push(&frame);
        let out = coalescer.take().expect("the frame");
        assert_eq!(out.as_ptr(), frame.as_ptr(), "the same bytes, shared");
        assert_eq!(coalescer.take(), None);
    }

    #[test]
    fn frames_ready_together_leave_as_one_chunk_in_order() {
        let mut coalescer = Coalescer::default();
        coalescer.push(&Bytes::from_static(b"a"));
        coalescer.push(&Bytes::from_static(b"b"));
        coalescer.write(|out| out.extend_from_slice(b"c"));
        coalescer.push(&Bytes::from_static(b"d"));
        assert_eq!(coalescer.take().as_deref(), Some(&b"abcd"[..]));
        assert_eq!(coalescer.take(), None);
    }

    #[test]
    fn it_is_full_at_the_chunk_size() {
        let mut coalescer = Coalescer::default();
        let half = Bytes::from(vec![b'x'; CHUNK_BYTES / 2]);
        coalescer.push(&half);
        assert!(!coalescer.is_full());
        coalescer.push(&half);
        assert!(coalescer.is_full());
        let mut big = Coalescer::default();
        big.push(&Bytes::from(vec![b'x'; CHUNK_BYTES]));
        assert!(big.is_full(), "one frame may fill it alone");
    }
}
