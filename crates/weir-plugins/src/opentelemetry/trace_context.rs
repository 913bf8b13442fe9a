//! W3C trace context for `opentelemetry`: the client's `traceparent`,
//! trace and span ids, and their hex forms.

use std::fmt::Write as _;

/// A valid W3C `traceparent` from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parent {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) sampled: bool,
}

pub(super) fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// W3C Trace Context §3.2: `version-traceid-parentid-flags`, lower-case
/// hex; version ff, all-zero ids and (for version 00) trailing data are
/// invalid; later versions may append fields.
pub(super) fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    let value = value.trim_ascii();
    if value.len() < 55 {
        return None;
    }
    let (version, rest) = value.split_at(2);
    let version: [u8; 1] = unhex(version)?;
    if version[0] == 0xff || (version[0] == 0 && value.len() != 55) {
        return None;
    }
    if version[0] != 0 && value.len() > 55 && value[55] != b'-' {
        return None;
    }
    let fields = &rest[..53];
    if fields[0] != b'-' || fields[33] != b'-' || fields[50] != b'-' {
        return None;
    }
    let trace_id: [u8; 16] = unhex(&fields[1..33])?;
    let span_id: [u8; 8] = unhex(&fields[34..50])?;
    let flags: [u8; 1] = unhex(&fields[51..53])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

/// `X-Request-Id` as a trace id: 32 hex digits (any case), not all zero.
pub(super) fn request_id_trace(value: &[u8]) -> Option<[u8; 16]> {
    unhex(&value.to_ascii_lowercase()).filter(|id| *id != [0; 16])
}

pub(super) fn new_trace_id() -> [u8; 16] {
    loop {
        let id = rand::random::<u128>().to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

pub(super) fn new_span_id() -> [u8; 8] {
    loop {
        let id = rand::random::<u64>().to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}
