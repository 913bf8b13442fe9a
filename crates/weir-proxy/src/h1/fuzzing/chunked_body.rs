//! The fuzz target for chunked bodies (`h1_chunked`): weir's scanner and
//! decoder against a reference reading of the same bytes.

use weir_http::chunked::{self, ChunkedScanner};

use super::show;

/// Scans `data` as a chunked body with [`ChunkedScanner`] whole, one byte at
/// a time, and cut in two at a few places, and checks that:
///
/// - every split gives the same result (consumed length, or the same error)
///   and the same `is_done` as the whole scan, and nothing is consumed after
///   the end;
/// - the scan agrees with a reference parser of RFC 9112 §7.1 (as weir
///   reads it: 1 to 16 hex digits, optional whitespace, an extension free of
///   CR and LF, strict CRLF, trailer lines) on where the body ends and on
///   whether it is malformed;
/// - every chunk-size line weir accepts is read by `httparse::parse_chunk_size`
///   with the same size and length, or refused by it;
/// - [`chunked::decode`] of an accepted body is the concatenated chunk data,
///   and `None` for an incomplete or malformed one;
/// - the fast path's re-framing of a request body keeps its invariants
///   (see [`super::reframe_body::reframed`]).
pub fn chunked(data: &[u8]) {
    super::reframe_body::reframed(data);
    let mut whole = ChunkedScanner::default();
    let whole_result = whole.scan(data);
    let whole_done = whole.is_done();

    let split = |parts: &[&[u8]]| {
        let mut s = ChunkedScanner::default();
        let mut used = 0;
        for p in parts {
            match s.scan(p) {
                Ok(n) => {
                    assert!(n <= p.len());
                    if s.is_done() {
                        // The rest of this part and the next ones are not
                        // the body's.
                        used += n;
                        return (Ok(used), true);
                    }
                    assert_eq!(n, p.len(), "an unfinished body left bytes unread");
                    used += n;
                }
                Err(e) => return (Err(e), s.is_done()),
            }
        }
        (Ok(used), s.is_done())
    };
    let ctx = || show(&data[..data.len().min(4096)]);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(
        split(&bytes),
        (whole_result, whole_done),
        "byte by byte: {}",
        ctx()
    );
    let mut cut_points = vec![data.len() / 3, data.len() / 2, 2 * data.len() / 3];
    if let Some(&b) = data.first() {
        cut_points.push(usize::from(b) % (data.len() + 1));
    }
    for cut in cut_points {
        assert_eq!(
            split(&[&data[..cut], &data[cut..]]),
            (whole_result, whole_done),
            "cut at {cut}: {}",
            ctx()
        );
    }
    if whole_done {
        // Once done, a scanner takes nothing more.
        assert_eq!(whole.scan(b"0\r\n\r\n"), Ok(0));
    }

    let reference = reference_chunked(data);
    let decoded = chunked::decode(data);
    match (whole_result, whole_done) {
        (Ok(n), true) => {
            let Ok(Some((end, body))) = reference else {
                panic!(
                    "weir ends a body the reference reads as {reference:?}: {}",
                    ctx()
                );
            };
            assert_eq!(n, end, "body end: {}", ctx());
            assert_eq!(decoded.as_deref(), Some(&body[..]), "decode: {}", ctx());
            assert_eq!(chunked::decode(&data[..n]), decoded, "{}", ctx());
        }
        (Ok(n), false) => {
            assert_eq!(n, data.len());
            assert!(
                matches!(reference, Ok(None)),
                "weir waits for more of a body the reference reads as {reference:?}: {}",
                ctx()
            );
            assert_eq!(decoded, None, "{}", ctx());
        }
        (Err(e), _) => {
            assert!(
                reference.is_err(),
                "weir refuses ({e}) a body the reference reads as {reference:?}: {}",
                ctx()
            );
            assert_eq!(decoded, None, "{}", ctx());
        }
    }
}

/// A chunked body read by a straightforward parser: `Ok(Some((end, data)))`
/// for a complete body, `Ok(None)` for a valid prefix, `Err(at)` when
/// malformed at byte `at`. Also checks each complete size line against
/// `httparse::parse_chunk_size`.
#[allow(clippy::type_complexity)]
fn reference_chunked(data: &[u8]) -> Result<Option<(usize, Vec<u8>)>, usize> {
    let mut out = Vec::new();
    let mut i = 0;
    // `None`: more bytes are needed.
    let at = |i: usize| data.get(i).copied();
    macro_rules! need {
        ($i:expr) => {
            match at($i) {
                Some(b) => b,
                None => return Ok(None),
            }
        };
    }
    loop {
        // chunk-size: 1*16HEXDIG
        let line_start = i;
        let mut size: u64 = 0;
        let mut digits = 0;
        loop {
            let b = need!(i);
            let Some(v) = (b as char).to_digit(16) else {
                break;
            };
            digits += 1;
            if digits > 16 {
                return Err(i);
            }
            size = size * 16 + u64::from(v);
            i += 1;
        }
        if digits == 0 {
            return Err(i);
        }
        // *WSP [ ";" *(not CR/LF) ] CRLF
        while matches!(need!(i), b' ' | b'\t') {
            i += 1;
        }
        if need!(i) == b';' {
            while !matches!(need!(i), b'\r' | b'\n') {
                i += 1;
            }
        }
        if need!(i) != b'\r' {
            return Err(i);
        }
        i += 1;
        if need!(i) != b'\n' {
            return Err(i);
        }
        i += 1;
        match httparse::parse_chunk_size(&data[line_start..]) {
            Ok(httparse::Status::Complete((len, n))) => assert!(
                len == i - line_start && n == size,
                "httparse reads the chunk-size line {} as ({len}, {n}), weir as ({}, {size})",
                show(&data[line_start..i]),
                i - line_start
            ),
            Ok(httparse::Status::Partial) => {
                panic!("httparse finds {} partial", show(&data[line_start..i]))
            }
            Err(_) => {}
        }
        if size == 0 {
            break;
        }
        // chunk-data CRLF
        let Some(end) = usize::try_from(size).ok().and_then(|s| i.checked_add(s)) else {
            return Ok(None);
        };
        if end > data.len() {
            return Ok(None);
        }
        out.extend_from_slice(&data[i..end]);
        i = end;
        if need!(i) != b'\r' {
            return Err(i);
        }
        i += 1;
        if need!(i) != b'\n' {
            return Err(i);
        }
        i += 1;
    }
    // trailer-section: *( 1*(not CR/LF) CRLF ) CRLF
    loop {
        if need!(i) == b'\r' {
            i += 1;
            if need!(i) != b'\n' {
                return Err(i);
            }
            return Ok(Some((i + 1, out)));
        }
        while !matches!(need!(i), b'\r' | b'\n') {
            i += 1;
        }
        if need!(i) != b'\r' {
            return Err(i);
        }
        i += 1;
        if need!(i) != b'\n' {
            return Err(i);
        }
        i += 1;
    }
}
