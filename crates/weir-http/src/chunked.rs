//! Chunked transfer coding (RFC 9112 §7.1), scanned in passing: the proxy
//! relays a chunked body byte for byte and only needs to know where it ends.
//! Nothing is copied or decoded.

/// Why a chunked body is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk size line has no hex digit, or a byte that does not belong.
    #[error("invalid chunk size line")]
    BadSize,
    /// A chunk size does not fit in 64 bits.
    #[error("chunk size too large")]
    SizeOverflow,
    /// A chunk's data is not followed by CRLF, or a line does not end in CRLF.
    #[error("missing CRLF in chunked body")]
    MissingCrlf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` counts them.
    Size { digits: u8 },
    /// After the size: optional whitespace, then `;extension` or CR.
    SizeTail,
    /// Inside a chunk extension, until CR.
    Extension,
    /// Expecting the LF that ends a size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field line, until CR.
    TrailerLine,
    /// Expecting the LF ending a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    FinalLf,
    /// The body is complete.
    Done,
}

/// Follows a chunked body as its bytes pass by.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size { digits: 0 },
            size: 0,
        }
    }
}

impl ChunkedScanner {
    /// True once the last chunk and the trailer section have gone by.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans the next bytes of the body. Returns how many of them belong to
    /// it: all of `data` unless the body ends inside it (the rest is the next
    /// message).
    pub fn scan(&mut self, data: &[u8]) -> Result<usize, ChunkError> {
        self.scan_with(data, |_| {})
    }

    /// [`ChunkedScanner::scan`], handing each piece of chunk data to
    /// `on_data` as it goes by (the body decoded, for body filters).
    pub fn scan_with(
        &mut self,
        data: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        if self.is_done() {
            return Ok(0);
        }
        let mut i = 0;
        while i < data.len() {
            if self.state == State::Data {
                let take = (data.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                on_data(&data[i..i + take]);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match self.state {
                State::Size { digits } => match hex_value(b) {
                    Some(v) => {
                        if digits >= 16 {
                            return Err(ChunkError::SizeOverflow);
                        }
                        self.size = (self.size << 4) | u64::from(v);
                        State::Size { digits: digits + 1 }
                    }
                    None if digits == 0 => return Err(ChunkError::BadSize),
                    None => self.after_size(b)?,
                },
                State::SizeTail => self.after_size(b)?,
                State::Extension => match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(ChunkError::MissingCrlf),
                    _ => State::Extension,
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    }
                }
                State::DataCr => expect(b, b'\r', State::DataLf)?,
                State::DataLf => expect(b, b'\n', State::Size { digits: 0 })?,
                State::TrailerStart => match b {
                    b'\r' => State::FinalLf,
                    b'\n' => return Err(ChunkError::MissingCrlf),
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(ChunkError::MissingCrlf),
                    _ => State::TrailerLine,
                },
                State::TrailerLf => expect(b, b'\n', State::TrailerStart)?,
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::Done;
                    return Ok(i);
                }
                // Data is consumed above and Done returns at once.
                State::Data | State::Done => return Ok(i - 1),
            };
        }
        Ok(i)
    }

    fn after_size(&mut self, b: u8) -> Result<State, ChunkError> {
        match b {
            b' ' | b'\t' => Ok(State::SizeTail),
            b';' => Ok(State::Extension),
            b'\r' => Ok(State::SizeLf),
            _ => Err(ChunkError::BadSize),
        }
    }
}

fn expect(b: u8, want: u8, next: State) -> Result<State, ChunkError> {
    if b == want {
        Ok(next)
    } else {
        Err(ChunkError::MissingCrlf)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a complete chunked body (one the scanner accepted): the chunks'
/// data, without sizes, extensions or trailers. `None` when it is not a
/// complete, well-formed body.
pub fn decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut scanner = ChunkedScanner::default();
    let used = scanner.scan(raw).ok()?;
    if !scanner.is_done() {
        return None;
    }
    let mut rest = &raw[..used];
    let mut out = Vec::new();
    loop {
        let line_end = rest.iter().position(|&b| b == b'\n')?;
        let digits = rest[..line_end]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .map(|&b| hex_value(b).map(u64::from))
            .try_fold(0u64, |acc, d| Some((acc << 4) | d?))?;
        rest = &rest[line_end + 1..];
        if digits == 0 {
            return Some(out);
        }
        let n = usize::try_from(digits).ok()?;
        out.extend_from_slice(rest.get(..n)?);
        rest = rest.get(n + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(parts: &[&[u8]]) -> (ChunkedScanner, usize) {
        let mut s = ChunkedScanner::default();
        let mut used = 0;
        for p in parts {
            used += s.scan(p).expect("valid body");
        }
        (s, used)
    }

    #[test]
    fn complete_bodies_decode_to_their_data() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(decode(raw).as_deref(), Some(&b"hello world"[..]));
        assert_eq!(decode(b"0\r\n\r\n").as_deref(), Some(&b""[..]));
        assert_eq!(decode(b"5\r\nhel"), None);
    }

    #[test]
    fn a_body_ends_after_the_last_chunk_and_trailers() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (s, used) = scan_all(&[body]);
        assert!(s.is_done());
        assert_eq!(&body[used..], b"NEXT");
    }

    #[test]
    fn any_split_gives_the_same_answer() {
        let body = b"a\r\n0123456789\r\n3 ; x\r\nabc\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            let (s, used) = scan_all(&[&body[..cut], &body[cut..]]);
            assert!(s.is_done(), "cut at {cut}");
            assert_eq!(used, body.len());
        }
        for cut in 0..body.len() {
            let mut s = ChunkedScanner::default();
            assert_eq!(s.scan(&body[..cut]), Ok(cut));
            assert!(!s.is_done(), "done too early at {cut}");
        }
    }

    #[test]
    fn malformed_framing_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello",
            b"5\r\nhelloX\r\n",
            b"11111111111111111\r\n",
            b"0\r\nbad\n",
        ] {
            let mut s = ChunkedScanner::default();
            assert!(s.scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn large_sizes_count_down_across_reads() {
        let mut s = ChunkedScanner::default();
        assert_eq!(s.scan(b"100000\r\n"), Ok(8));
        let data = vec![b'x'; 0x10_0000];
        for part in data.chunks(7000) {
            assert_eq!(s.scan(part), Ok(part.len()));
        }
        assert_eq!(s.scan(b"\r\n0\r\n\r\n"), Ok(7));
        assert!(s.is_done());
    }
}
