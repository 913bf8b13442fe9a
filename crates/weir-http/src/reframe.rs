//! A chunked request body (RFC 9112 §7.1) re-framed canonically on its way
//! to the node, so a node with a lax chunk parser gets no ambiguous
//! framing, whatever the client sent.
//!
//! What goes out: chunk sizes in hex without leading zeros (`0` only for the
//! last chunk) and at most [`MAX_OUT_CHUNK`] (a larger chunk is split, so a
//! node that reads sizes into 32 bits cannot be desynchronised), no chunk
//! extensions, CRLF line endings, and the trailer fields that are allowed in
//! trailers. Refused: a size line that is not `hex [BWS ; extension] CRLF`
//! (whitespace after a size without an extension, for one), a size of more
//! than 16 hex digits, an extension with a control character or a size line
//! over [`MAX_LINE`] bytes, chunk data not followed by CRLF, a trailer line
//! without a colon or with an invalid name or value, obs-fold, and trailers
//! over [`MAX_TRAILERS`] bytes. Trailer fields RFC 9110 §6.5.1 forbids
//! (framing, routing, request modifiers, authentication, content
//! processing) are dropped.
//!
//! The data is never copied: [`Reframer::step`] says how many input bytes
//! pass as they are, and gives the few bytes that replace a non-canonical
//! chunk head or a dropped trailer line. A canonical body passes whole, in
//! one step per read.

/// Longest chunk size line accepted, extensions included.
pub const MAX_LINE: usize = 4096;
/// Largest trailer section accepted (every trailer line, CRLFs included).
pub const MAX_TRAILERS: usize = 8 * 1024;
/// Largest chunk written: larger chunks go out as several.
pub const MAX_OUT_CHUNK: u64 = 0x7fff_ffff;

/// Why a chunked request body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReframeError {
    /// A chunk size line is not `hex [BWS ; extension] CRLF`.
    #[error("invalid chunk size line")]
    BadSize,
    /// A chunk size has more than 16 hex digits (leading zeros included).
    #[error("chunk size of more than 16 hex digits")]
    SizeTooLong,
    /// A chunk extension holds a control character (NUL, CR...).
    #[error("invalid chunk extension")]
    BadExtension,
    /// A chunk size line is over [`MAX_LINE`] bytes.
    #[error("chunk size line over 4096 bytes")]
    LineTooLong,
    /// A line does not end in CRLF, or chunk data is not followed by CRLF.
    #[error("missing CRLF in chunked body")]
    MissingCrlf,
    /// A trailer line has no colon, or an invalid name or value.
    #[error("invalid trailer field")]
    BadTrailer,
    /// A trailer line starts with whitespace (obs-fold).
    #[error("obsolete line folding in trailers")]
    FoldedTrailer,
    /// The trailer section is over [`MAX_TRAILERS`] bytes.
    #[error("trailer section over 8192 bytes")]
    TrailersTooLarge,
}

/// Where the body stands, between two elements of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk size line.
    SizeLine,
    /// Inside chunk data: `emit_left` bytes of the chunk as written,
    /// `declared_left` of the chunk as the client declared it.
    Data { emit_left: u64, declared_left: u64 },
    /// A chunk larger than [`MAX_OUT_CHUNK`] continues as a new chunk.
    Split { declared_left: u64 },
    /// After chunk data: its CRLF.
    DataCrlf,
    /// In the trailer section; `seen` bytes of it so far.
    Trailers { seen: usize },
    /// The body is complete.
    Done,
}

/// Bytes written in place of input bytes: a chunk head (with the CRLF
/// ending the previous chunk when a large chunk is split), or nothing (a
/// dropped trailer field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replacement {
    bytes: [u8; 22],
    len: u8,
}

impl Replacement {
    const NOTHING: Replacement = Replacement {
        bytes: [0; 22],
        len: 0,
    };

    /// `[CRLF] size-in-hex CRLF`.
    fn head(size: u64, after_data: bool) -> Replacement {
        let mut r = Replacement::NOTHING;
        let mut push = |b: u8| {
            r.bytes[usize::from(r.len)] = b;
            r.len += 1;
        };
        if after_data {
            push(b'\r');
            push(b'\n');
        }
        let digits = if size == 0 {
            1
        } else {
            (64 - size.leading_zeros()).div_ceil(4)
        };
        for i in (0..digits).rev() {
            push(b"0123456789abcdef"[((size >> (i * 4)) & 0xf) as usize]);
        }
        push(b'\r');
        push(b'\n');
        r
    }

    /// The bytes to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// What to do with the next input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next `n` bytes go out as they are.
    Pass(usize),
    /// The next `consumed` bytes (possibly none) are replaced by `with`.
    Replace {
        /// Input bytes replaced.
        consumed: usize,
        /// What goes out instead.
        with: Replacement,
    },
    /// Nothing can be decided before more bytes arrive (an incomplete line
    /// or CRLF at the start of the input, or no input).
    NeedMore,
    /// The body is complete: the rest of the input is not part of it.
    Done,
}

/// Re-frames a chunked body as its bytes pass by (see the module docs).
#[derive(Debug, Clone)]
pub struct Reframer {
    state: State,
}

impl Default for Reframer {
    fn default() -> Self {
        Reframer {
            state: State::SizeLine,
        }
    }
}

impl Reframer {
    /// True once the last chunk and the trailer section have gone by.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decides what happens to the start of `input`, the bytes of the body
    /// not yet stepped over. Consecutive canonical elements are passed in
    /// one step.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, ReframeError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            // An element that cannot be passed as is ends a run of passed
            // bytes; it is handled by the next call.
            let pass_first = |pos: usize| (pos > 0).then_some(Step::Pass(pos));
            match self.state {
                State::Done => return Ok(pass_first(pos).unwrap_or(Step::Done)),
                State::Data {
                    emit_left,
                    declared_left,
                } => {
                    if rest.is_empty() {
                        return Ok(pass_first(pos).unwrap_or(Step::NeedMore));
                    }
                    let take = emit_left.min(rest.len() as u64);
                    pos += take as usize;
                    let (emit_left, declared_left) = (emit_left - take, declared_left - take);
                    self.state = match (emit_left, declared_left) {
                        (0, 0) => State::DataCrlf,
                        (0, _) => State::Split { declared_left },
                        _ => State::Data {
                            emit_left,
                            declared_left,
                        },
                    };
                }
                State::Split { declared_left } => {
                    if let Some(s) = pass_first(pos) {
                        return Ok(s);
                    }
                    let emit = declared_left.min(MAX_OUT_CHUNK);
                    self.state = State::Data {
                        emit_left: emit,
                        declared_left,
                    };
                    return Ok(Step::Replace {
                        consumed: 0,
                        with: Replacement::head(emit, true),
                    });
                }
                State::DataCrlf => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::SizeLine;
                    }
                    [] | [b'\r'] => return Ok(pass_first(pos).unwrap_or(Step::NeedMore)),
                    _ => return Err(ReframeError::MissingCrlf),
                },
                State::SizeLine => {
                    let Some(line) = line(rest, MAX_LINE, ReframeError::LineTooLong)? else {
                        return Ok(pass_first(pos).unwrap_or(Step::NeedMore));
                    };
                    let size = size_line(&rest[..line])?;
                    let emit = size.value.min(MAX_OUT_CHUNK);
                    let canonical = size.canonical && size.value == emit;
                    if !canonical {
                        if let Some(s) = pass_first(pos) {
                            return Ok(s);
                        }
                    }
                    self.state = if size.value == 0 {
                        State::Trailers { seen: 0 }
                    } else {
                        State::Data {
                            emit_left: emit,
                            declared_left: size.value,
                        }
                    };
                    if !canonical {
                        return Ok(Step::Replace {
                            consumed: line,
                            with: Replacement::head(emit, false),
                        });
                    }
                    pos += line;
                }
                State::Trailers { seen } => {
                    // The final CRLF always fits.
                    let room = (MAX_TRAILERS + 2).saturating_sub(seen);
                    let Some(line) = line(rest, room, ReframeError::TrailersTooLarge)? else {
                        return Ok(pass_first(pos).unwrap_or(Step::NeedMore));
                    };
                    if line == 2 {
                        pos += 2;
                        self.state = State::Done;
                        continue;
                    }
                    let keep = trailer_line(&rest[..line - 2])?;
                    if !keep {
                        if let Some(s) = pass_first(pos) {
                            return Ok(s);
                        }
                    }
                    self.state = State::Trailers { seen: seen + line };
                    if !keep {
                        return Ok(Step::Replace {
                            consumed: line,
                            with: Replacement::NOTHING,
                        });
                    }
                    pos += line;
                }
            }
        }
    }
}

/// The length of the CRLF-ended line at the start of `input`, CRLF
/// included; None when it is not complete yet. A line longer than `max`
/// bytes is `too_long`; one ending in a bare LF is refused.
fn line(input: &[u8], max: usize, too_long: ReframeError) -> Result<Option<usize>, ReframeError> {
    let window = &input[..input.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf > 0 && window[lf - 1] == b'\r' => Ok(Some(lf + 1)),
        Some(_) => Err(ReframeError::MissingCrlf),
        None if input.len() >= max => Err(too_long),
        None => Ok(None),
    }
}

/// A parsed chunk size line.
struct Size {
    value: u64,
    /// No leading zero (but for `0` itself) and no extension.
    canonical: bool,
}

/// Parses `line` (CRLF included): `1*HEXDIG [BWS ";" extension] CRLF`.
fn size_line(line: &[u8]) -> Result<Size, ReframeError> {
    let content = &line[..line.len() - 2];
    let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ReframeError::BadSize);
    }
    if digits > 16 {
        return Err(ReframeError::SizeTooLong);
    }
    let value = content[..digits]
        .iter()
        .fold(0u64, |acc, &b| (acc << 4) | u64::from(hex_value(b)));
    let rest = &content[digits..];
    if !rest.is_empty() {
        // Whitespace only before an extension (BWS), never at the end.
        let ws = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let ext = &rest[ws..];
        if ext.first() != Some(&b';') {
            return Err(ReframeError::BadSize);
        }
        if ext.iter().any(|&b| !field_byte(b)) {
            return Err(ReframeError::BadExtension);
        }
    }
    Ok(Size {
        value,
        canonical: rest.is_empty() && (digits == 1 || content[0] != b'0'),
    })
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// A byte allowed in a field value or a chunk extension: HTAB, SP, VCHAR,
/// obs-text.
fn field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Checks a trailer field line (without its CRLF); false when the field
/// is one that must not be sent in trailers (dropped).
fn trailer_line(content: &[u8]) -> Result<bool, ReframeError> {
    if matches!(content.first(), Some(b' ' | b'\t')) {
        return Err(ReframeError::FoldedTrailer);
    }
    let colon = content
        .iter()
        .position(|&b| b == b':')
        .ok_or(ReframeError::BadTrailer)?;
    let (name, value) = (&content[..colon], &content[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(ReframeError::BadTrailer);
    }
    if !value.iter().all(|&b| field_byte(b)) {
        return Err(ReframeError::BadTrailer);
    }
    Ok(!forbidden_in_trailers(name))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Fields RFC 9110 §6.5.1 keeps out of trailers: message framing, routing,
/// request modifiers (controls, conditionals, range), authentication, and
/// what says how to process the content; plus connection-specific fields.
const FORBIDDEN_TRAILERS: &[&str] = &[
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "cookie",
    "expect",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "www-authenticate",
];

/// True for a field that must not be sent in trailers (any case).
pub fn forbidden_in_trailers(name: &[u8]) -> bool {
    FORBIDDEN_TRAILERS
        .iter()
        .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
}

/// Appends `raw` (a body prefix [`Reframer`] accepted) re-framed to `out`;
/// stops where a fresh re-framer would wait for more input.
pub fn reframe_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ReframeError> {
    let mut r = Reframer::default();
    let mut pos = 0;
    loop {
        match r.step(&raw[pos..])? {
            Step::Pass(n) => {
                out.extend_from_slice(&raw[pos..pos + n]);
                pos += n;
            }
            Step::Replace { consumed, with } => {
                out.extend_from_slice(with.as_bytes());
                pos += consumed;
            }
            Step::NeedMore | Step::Done => return Ok(()),
        }
    }
}

/// Steps over `raw` (a body's bytes so far) with a fresh re-framer: how
/// many bytes it stepped over and the re-framer where it stopped (done, or
/// waiting for more).
pub fn check(raw: &[u8]) -> Result<(usize, Reframer), ReframeError> {
    let mut r = Reframer::default();
    let mut pos = 0;
    loop {
        match r.step(&raw[pos..])? {
            Step::Pass(n) => pos += n,
            Step::Replace { consumed, .. } => pos += consumed,
            Step::NeedMore | Step::Done => return Ok((pos, r)),
        }
    }
}

#[cfg(test)]
#[path = "reframe_tests.rs"]
mod tests;
