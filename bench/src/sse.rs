//! An incremental Server-Sent Events reader that extracts only what the benchmark needs: each
//! event's write timestamp and index (from its `data`), and the last event id (the cursor a
//! client sends back as `Last-Event-ID`).
//!
//! It is deliberately not a full WHATWG parser: at saturation the generator reads a million
//! frames a second on the same two cores as the server, so each line is found with `memchr`
//! and the two numbers as [`crate::payload`] finds them, without allocating per frame. Both
//! peers end lines with LF (a CR before it is tolerated); the conformance of the server's
//! framing is tested elsewhere (`tests/sse_conformance.rs`).

use std::collections::HashMap;

use crate::payload::{self, BenchEvent};

/// What one dispatched frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// An event carrying the writer's timestamp and index, and its lane (the index of its task
    /// in a multi-task stream; 0 otherwise).
    Bench(usize, BenchEvent),
    /// The server's terminal `complete` event: the task ended and the stream ends after it.
    Complete,
    /// An event whose data carries no benchmark fields.
    Other,
}

/// Reads one connection's bytes as they arrive. Comments, `retry:`, `event:` and frames
/// without data (nchan's `event: ping`) dispatch nothing.
#[derive(Debug, Default)]
pub struct SseReader {
    /// The unfinished last line of the previous chunk.
    partial: Vec<u8>,
    /// The `id` of the frame being read; it becomes `last_id` only when the frame dispatches,
    /// as in a browser, so a connection cut mid-frame resumes before that frame.
    pending_id: Option<Vec<u8>>,
    /// The benchmark fields of the frame being read, once its data line was seen.
    pending: Option<Frame>,
    /// Whether the frame being read is named `complete`.
    pending_complete: bool,
    /// The id of the last dispatched frame that had one.
    last_id: Vec<u8>,
    /// A multi-task stream's tasks, by id, and their lanes (empty: a single-task stream, whose
    /// events are all lane 0).
    lanes: HashMap<Vec<u8>, usize>,
}

impl SseReader {
    /// A reader of a multi-task stream of `tasks`: each event's lane is its task's index.
    pub fn multi(tasks: &[String]) -> SseReader {
        let lanes = tasks
            .iter()
            .enumerate()
            .map(|(lane, task)| (task.as_bytes().to_vec(), lane))
            .collect();
        SseReader {
            lanes,
            ..SseReader::default()
        }
    }

    /// Feeds a chunk; calls `on_frame` for every frame it completes.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_frame: impl FnMut(Frame)) {
        if !self.partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', chunk) else {
                self.partial.extend_from_slice(chunk);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&chunk[..end]);
            self.line(&line, &mut on_frame);
            line.clear();
            self.partial = line; // keep the allocation
            chunk = &chunk[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            self.line(&chunk[start..end], &mut on_frame);
            start = end + 1;
        }
        self.partial.extend_from_slice(&chunk[start..]);
    }

    /// The cursor to resume from: the id of the last complete frame (empty before any).
    pub fn last_id(&self) -> &[u8] {
        &self.last_id
    }

    /// Forgets a half-read frame when its connection ends; the last id stays.
    pub fn connection_ended(&mut self) {
        self.partial.clear();
        self.pending_id = None;
        self.pending = None;
        self.pending_complete = false;
    }

    fn line(&mut self, line: &[u8], on_frame: &mut impl FnMut(Frame)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if let Some(id) = self.pending_id.take() {
                self.last_id = id;
            }
            if let Some(frame) = self.pending.take() {
                if std::mem::take(&mut self.pending_complete) {
                    on_frame(Frame::Complete);
                } else {
                    on_frame(frame);
                }
            }
            self.pending_complete = false;
        } else if let Some(value) = line.strip_prefix(b"data:") {
            if self.pending.is_none() {
                let lane = if self.lanes.is_empty() {
                    Some(0)
                } else {
                    payload::task(value).and_then(|task| self.lanes.get(task).copied())
                };
                self.pending = Some(match (lane, payload::parse(value)) {
                    (Some(lane), Some(event)) => Frame::Bench(lane, event),
                    _ => Frame::Other,
                });
            }
        } else if line == b"event: complete" || line == b"event:complete" {
            self.pending_complete = true;
        } else if let Some(value) = line.strip_prefix(b"id:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            self.pending_id = Some(value.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&[u8]]) -> (Vec<Frame>, SseReader) {
        let mut reader = SseReader::default();
        let mut frames = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, |f| frames.push(f));
        }
        (frames, reader)
    }

    const TASKSTREAM_FRAME: &[u8] = b"id: czE:7\nevent: assistant\n\
        data: {\"content\":\"{\\\"t\\\":1700000000123456789,\\\"n\\\":6}\"}\n\n";

    #[test]
    fn reads_a_multi_task_frame_into_its_lane() {
        let mut reader = SseReader::multi(&["a".to_owned(), "b".to_owned()]);
        let mut frames = Vec::new();
        reader.feed(
            b"id: m00x\nevent: assistant\ndata: {\"task\":\"b\",\"data\":\
              {\"content\":\"{\\\"t\\\":5,\\\"n\\\":2}\"}}\n\n",
            |f| frames.push(f),
        );
        let event = BenchEvent {
            written_at_ns: 5,
            index: 2,
        };
        assert_eq!(frames, [Frame::Bench(1, event)]);
        assert_eq!(reader.last_id(), b"m00x");
    }

    #[test]
    fn reads_a_taskstream_frame() {
        let (frames, reader) = read(&[b"retry: 1000\n\n", TASKSTREAM_FRAME]);
        assert_eq!(
            frames,
            [Frame::Bench(
                0,
                BenchEvent {
                    written_at_ns: 1_700_000_000_123_456_789,
                    index: 6
                }
            )]
        );
        assert_eq!(reader.last_id(), b"czE:7");
    }

    #[test]
    fn reads_an_nchan_frame_with_pings_and_crlf() {
        let frame = b": hi\r\n\r\nevent: ping\n\nevent: assistant\nid: 1795789353:0\n\
            data: {\"content\":\"{\\\"t\\\":5,\\\"n\\\":0}\"}\r\n\r\n";
        let (frames, reader) = read(&[frame]);
        assert_eq!(
            frames,
            [Frame::Bench(
                0,
                BenchEvent {
                    written_at_ns: 5,
                    index: 0
                }
            )]
        );
        assert_eq!(reader.last_id(), b"1795789353:0");
    }

    #[test]
    fn frames_split_at_every_byte_read_the_same() {
        let whole: Vec<u8> = [TASKSTREAM_FRAME, b": keep-alive\n\n", TASKSTREAM_FRAME].concat();
        let (expected, _) = read(&[&whole]);
        assert_eq!(expected.len(), 2);
        for split in 0..whole.len() {
            let (frames, reader) = read(&[&whole[..split], &whole[split..]]);
            assert_eq!(frames, expected, "split at {split}");
            assert_eq!(reader.last_id(), b"czE:7");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(read(&bytes).0, expected);
    }

    #[test]
    fn a_frame_cut_by_a_disconnect_does_not_move_the_cursor() {
        let mut reader = SseReader::default();
        let mut frames = Vec::new();
        reader.feed(b"id: a:1\ndata: {}\n\nid: a:2\ndata: {\"con", |f| {
            frames.push(f)
        });
        reader.connection_ended();
        reader.feed(b"tent\":1}\n\n", |f| frames.push(f));
        assert_eq!(frames, [Frame::Other]);
        assert_eq!(reader.last_id(), b"a:1");
    }

    #[test]
    fn data_without_benchmark_fields_is_another_event_and_complete_is_its_own() {
        let (frames, _) = read(&[b"id: x:1\nevent: cost\ndata: {}\n\n"]);
        assert_eq!(frames, [Frame::Other]);
        let (frames, reader) = read(&[b"id: x:1:c\nevent: complete\ndata: {}\n\n"]);
        assert_eq!(frames, [Frame::Complete]);
        assert_eq!(reader.last_id(), b"x:1:c");
    }
}
