//! Incremental decoder of the HTTP/1.1 chunked transfer coding (RFC 9112 §7.1)
//! for upstream response bodies: it consumes framing bytes from the connection's
//! read buffer and hands out chunk data zero-copy. Pure (no I/O); it must never
//! panic on hostile bytes and never accept a malformed message as complete.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line extension (`;name=value...`) accepted, per chunk.
const MAX_EXTENSION: usize = 16 * 1024;
/// Most trailer-section bytes accepted (trailers are read and dropped).
const MAX_TRAILERS: usize = 64 * 1024;
/// Most hex digits in a chunk size (leading zeros included); 16 digits already
/// reach `u64::MAX`, more is garbage.
const MAX_SIZE_DIGITS: u32 = 16;

/// Why a chunked body cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk-size line holds no hex digits or a byte that is not allowed there.
    #[error("invalid chunk size line")]
    InvalidSize,
    /// The chunk size does not fit in 64 bits.
    #[error("chunk size too large")]
    SizeOverflow,
    /// A chunk extension longer than usher accepts.
    #[error("chunk extension too long")]
    ExtensionTooLong,
    /// Chunk data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingDataCrlf,
    /// A line ending is not CRLF.
    #[error("chunk line not terminated by CRLF")]
    InvalidLineEnding,
    /// The trailer section is larger than usher accepts.
    #[error("chunked trailers too large")]
    TrailersTooLarge,
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Chunk data, split off the front of the buffer.
    Data(Bytes),
    /// The buffer holds no complete next item; read more and call again.
    NeedMore,
    /// The last chunk and the trailer section were consumed; the message ended.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { value: u64, digits: u32 },
    /// After the digits: optional whitespace before `;` or CR.
    SizeWs { value: u64 },
    /// Inside a chunk extension, until CR.
    Extension { value: u64, len: usize },
    /// CR of the size line seen, LF expected.
    SizeLf { value: u64 },
    /// Chunk data left to hand out.
    Data { left: u64 },
    /// CR after the chunk data expected.
    DataCr,
    /// LF after the chunk data expected.
    DataLf,
    /// Start of a trailer line (or of the final CRLF).
    TrailerStart { seen: usize },
    /// Inside a trailer field line, until CR.
    TrailerLine { seen: usize },
    /// LF of a trailer line expected.
    TrailerLf { seen: usize },
    /// LF of the final empty line expected.
    EndLf,
    /// The message ended.
    Done,
}

/// Decoder state for one chunked message.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a message.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
        }
    }

    /// Whether the whole message (last chunk and trailers) was consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing bytes from the front of `buf` and returns the next piece
    /// of data, `NeedMore` when `buf` ran out, or `Done` at the end of the message
    /// (bytes after the message stay in `buf`).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            if let State::Data { left } = self.state {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let data = buf.split_to(take).freeze();
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                return Ok(Decoded::Data(data));
            }
            if self.state == State::Done {
                return Ok(Decoded::Done);
            }
            let Some(&b) = buf.first() else {
                return Ok(Decoded::NeedMore);
            };
            buf.advance(1);
            self.state = self.step(b)?;
        }
    }

    /// One framing byte (never called in `Data` or `Done`).
    fn step(&self, b: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Size { value, digits } => match hex(b) {
                Some(d) => {
                    if digits >= MAX_SIZE_DIGITS && value == 0 && d == 0 {
                        return Err(ChunkError::InvalidSize);
                    }
                    let value = value
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(d))
                        .ok_or(ChunkError::SizeOverflow)?;
                    State::Size {
                        value,
                        digits: digits + 1,
                    }
                }
                None if digits == 0 => return Err(ChunkError::InvalidSize),
                None => after_size(value, b)?,
            },
            State::SizeWs { value } => after_size(value, b)?,
            State::Extension { value, len } => match b {
                b'\r' => State::SizeLf { value },
                b'\n' => return Err(ChunkError::InvalidLineEnding),
                _ if len >= MAX_EXTENSION => return Err(ChunkError::ExtensionTooLong),
                _ => State::Extension {
                    value,
                    len: len + 1,
                },
            },
            State::SizeLf { value } => match b {
                b'\n' if value == 0 => State::TrailerStart { seen: 0 },
                b'\n' => State::Data { left: value },
                _ => return Err(ChunkError::InvalidLineEnding),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError::MissingDataCrlf),
            },
            State::DataLf => match b {
                b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(ChunkError::MissingDataCrlf),
            },
            State::TrailerStart { seen } => match b {
                b'\r' => State::EndLf,
                b'\n' => return Err(ChunkError::InvalidLineEnding),
                _ => trailer_byte(seen)?,
            },
            State::TrailerLine { seen } => match b {
                b'\r' => State::TrailerLf { seen: seen + 1 },
                b'\n' => return Err(ChunkError::InvalidLineEnding),
                _ => trailer_byte(seen)?,
            },
            State::TrailerLf { seen } => match b {
                b'\n' => State::TrailerStart { seen: seen + 1 },
                _ => return Err(ChunkError::InvalidLineEnding),
            },
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err(ChunkError::InvalidLineEnding),
            },
            // Not reached: `decode` handles both before reading a byte.
            State::Data { .. } | State::Done => self.state,
        })
    }
}

/// The byte after a chunk size's digits: whitespace, `;` or CR.
fn after_size(value: u64, b: u8) -> Result<State, ChunkError> {
    Ok(match b {
        b' ' | b'\t' => State::SizeWs { value },
        b';' => State::Extension { value, len: 0 },
        b'\r' => State::SizeLf { value },
        b'\n' => return Err(ChunkError::InvalidLineEnding),
        _ => return Err(ChunkError::InvalidSize),
    })
}

fn trailer_byte(seen: usize) -> Result<State, ChunkError> {
    if seen >= MAX_TRAILERS {
        return Err(ChunkError::TrailersTooLarge);
    }
    Ok(State::TrailerLine { seen: seen + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Feeds `wire` in the given piece sizes; returns the data, whether the
    /// message ended, and what stayed in the buffer after it.
    fn feed(wire: &[u8], pieces: &[usize]) -> Result<(Vec<u8>, bool, Vec<u8>), ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut sizes = pieces.iter().copied().chain(std::iter::repeat(1));
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => {
                    assert!(!d.is_empty(), "empty data frame");
                    out.extend_from_slice(&d)
                }
                Decoded::Done => return Ok((out, true, buf.to_vec())),
                Decoded::NeedMore => {
                    if pos >= wire.len() {
                        return Ok((out, false, buf.to_vec()));
                    }
                    let n = sizes.next().unwrap_or(1).max(1).min(wire.len() - pos);
                    buf.extend_from_slice(&wire[pos..pos + n]);
                    pos += n;
                }
            }
        }
    }

    fn whole(wire: &[u8]) -> Result<(Vec<u8>, bool, Vec<u8>), ChunkError> {
        feed(wire, &[wire.len().max(1)])
    }

    /// A chunked message carrying `data` in chunks of the given sizes, with
    /// upper- and lower-case hex, extensions and trailers.
    fn encode(data: &[u8], chunk_sizes: &[usize], upper: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut pos = 0;
        for (i, &s) in chunk_sizes.iter().enumerate() {
            let s = s.min(data.len() - pos);
            if s == 0 {
                continue;
            }
            let size = if upper {
                format!("{s:X}")
            } else {
                format!("{s:x}")
            };
            wire.extend_from_slice(size.as_bytes());
            if i % 2 == 1 {
                wire.extend_from_slice(b";name=value;flag");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&data[pos..pos + s]);
            wire.extend_from_slice(b"\r\n");
            pos += s;
        }
        if pos < data.len() {
            wire.extend_from_slice(format!("{:x}\r\n", data.len() - pos).as_bytes());
            wire.extend_from_slice(&data[pos..]);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0;last=1\r\nX-Trailer: a\r\nX-Other: b\r\n\r\n");
        wire
    }

    #[test]
    fn decodes_a_simple_message() {
        let (data, done, rest) = whole(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(data, b"hello world");
        assert!(done);
        assert!(rest.is_empty());
    }

    #[test]
    fn hex_sizes_in_both_cases_and_leading_zeros() {
        let body = vec![b'z'; 0x1ab];
        let mut wire = b"001Ab\r\n".to_vec();
        wire.extend_from_slice(&body);
        wire.extend_from_slice(b"\r\n0000\r\n\r\n");
        let (data, done, _) = whole(&wire).unwrap();
        assert_eq!(data, body);
        assert!(done);
    }

    #[test]
    fn extensions_and_trailers_are_dropped() {
        let wire = b"3;a=b;c=\"d e\"\r\nabc\r\n2 ;x\r\nde\r\n0;end\r\nT: 1\r\nU: 2\r\n\r\n";
        let (data, done, rest) = whole(wire).unwrap();
        assert_eq!(data, b"abcde");
        assert!(done);
        assert!(rest.is_empty());
    }

    #[test]
    fn bytes_after_the_message_stay_in_the_buffer() {
        let (data, done, rest) = whole(b"1\r\na\r\n0\r\n\r\nHTTP/1.1 200").unwrap();
        assert_eq!(data, b"a");
        assert!(done);
        assert_eq!(rest, b"HTTP/1.1 200");
    }

    #[test]
    fn every_split_position_gives_the_same_data() {
        let body: Vec<u8> = (0..200u8).collect();
        for upper in [false, true] {
            let wire = encode(&body, &[1, 17, 3, 64, 100], upper);
            // Byte by byte.
            let (data, done, rest) = feed(&wire, &[1]).unwrap();
            assert_eq!(data, body);
            assert!(done && rest.is_empty());
            // Two pieces, split at every position.
            for cut in 1..wire.len() {
                let (data, done, rest) = feed(&wire, &[cut, wire.len()]).unwrap();
                assert_eq!(data, body, "split at {cut}");
                assert!(done && rest.is_empty(), "split at {cut}");
            }
        }
    }

    #[test]
    fn random_splits_and_chunk_sizes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let len = rng.gen_range(0..3000);
            let body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let chunks: Vec<usize> = (0..rng.gen_range(0..8))
                .map(|_| rng.gen_range(1..700))
                .collect();
            let wire = encode(&body, &chunks, rng.gen());
            let pieces: Vec<usize> = (0..wire.len()).map(|_| rng.gen_range(1..64)).collect();
            let (data, done, rest) = feed(&wire, &pieces).unwrap();
            assert_eq!(data, body);
            assert!(done && rest.is_empty());
        }
    }

    #[test]
    fn an_unfinished_message_is_not_done() {
        let wire = encode(b"hello world", &[4], false);
        for end in 0..wire.len() {
            let (_, done, _) = feed(&wire[..end], &[1]).unwrap();
            assert!(!done, "done after only {end} of {} bytes", wire.len());
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: [(&[u8], ChunkError); 14] = [
            (b"g\r\n", ChunkError::InvalidSize),
            (b"\r\n", ChunkError::InvalidSize),
            (b";ext\r\n", ChunkError::InvalidSize),
            (b"-1\r\n", ChunkError::InvalidSize),
            (b"5x\r\nhello\r\n", ChunkError::InvalidSize),
            (b"5 5\r\n", ChunkError::InvalidSize),
            (b"5\nhello\r\n", ChunkError::InvalidLineEnding),
            (b"5\r\r", ChunkError::InvalidLineEnding),
            (b"5\r\nhelloX\r\n", ChunkError::MissingDataCrlf),
            (b"5\r\nhello\rX", ChunkError::MissingDataCrlf),
            (b"5\r\nhello\n", ChunkError::MissingDataCrlf),
            (b"10000000000000000\r\n", ChunkError::SizeOverflow),
            (b"0\r\nT: 1\n", ChunkError::InvalidLineEnding),
            (b"0\r\n\r\r", ChunkError::InvalidLineEnding),
        ];
        for (wire, want) in cases {
            assert_eq!(
                whole(wire).map(|_| ()),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            assert_eq!(feed(wire, &[1]).map(|_| ()), Err(want));
        }
        // The largest 64-bit size is a valid (if unfinished) chunk.
        let (_, done, _) = whole(b"ffffffffffffffff\r\nabc").unwrap();
        assert!(!done);
        // Endless leading zeros are garbage.
        assert_eq!(whole(&[b'0'; 40]).map(|_| ()), Err(ChunkError::InvalidSize));
    }

    #[test]
    fn oversized_extensions_and_trailers_are_errors() {
        let mut wire = b"1;".to_vec();
        wire.extend(std::iter::repeat_n(b'a', MAX_EXTENSION + 1));
        assert_eq!(whole(&wire).map(|_| ()), Err(ChunkError::ExtensionTooLong));
        let mut wire = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILERS / 10 + 2) {
            wire.extend_from_slice(b"X-T: abcd\r\n");
        }
        assert_eq!(whole(&wire).map(|_| ()), Err(ChunkError::TrailersTooLarge));
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let alphabet = b"0123456789abcdefABCDEF;= \t\r\nxyz";
        for _ in 0..2000 {
            let len = rng.gen_range(0..60);
            let wire: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let _ = feed(&wire, &[rng.gen_range(1..8)]);
        }
    }
}
