//! `meta.k8s.io/v1` `Status` bodies shaped exactly like the recorded ones, plus the
//! small encodings the API server uses (continue tokens, timestamps, uids).

use serde::{Deserialize, Serialize};

/// A `Status` object as the API server writes it (boxed: it travels in `Result`s).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub(crate) struct Status(Box<StatusBody>);

/// The fields of a `Status`, in the Go struct's order.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusBody {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: StatusMeta,
    status: &'static str,
    message: String,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    code: u16,
}

#[derive(Debug, Clone, Default, Serialize)]
struct StatusMeta {
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_: Option<String>,
}

/// `StatusDetails`; Go field order: name, group, kind, uid, causes, retryAfterSeconds.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) causes: Option<Vec<Cause>>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_seconds: Option<u32>,
}

/// `StatusCause`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
}

impl Status {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Status {
        Status(Box::new(StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: StatusMeta::default(),
            status: "Failure",
            message: message.into(),
            reason,
            details: None,
            code,
        }))
    }

    /// The HTTP status code.
    pub(crate) fn code(&self) -> u16 {
        self.0.code
    }

    pub(crate) fn with_details(mut self, details: Details) -> Status {
        self.0.details = Some(details);
        self
    }

    pub(crate) fn with_continue(mut self, token: String) -> Status {
        self.0.metadata.continue_ = Some(token);
        self
    }

    /// 401 exactly as `error-401-bad-token.http`.
    pub(crate) fn unauthorized() -> Status {
        Status::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 for a resource request, as `error-403-forbidden.http` / `error-403-get-not-allowed.http`.
    pub(crate) fn forbidden_resource(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Status {
        let subject = match name {
            Some(n) => format!("{resource} \"{n}\""),
            None => resource.to_string(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let message = format!(
            "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
        );
        // Details.kind carries the resource (plural), as the real server does.
        let resource_kind = resource.split('/').next().unwrap_or(resource).to_string();
        Status::new(403, "Forbidden", message).with_details(Details {
            name: name.map(str::to_string),
            group: (!group.is_empty()).then(|| group.to_string()),
            kind: Some(resource_kind),
            ..Details::default()
        })
    }

    /// 403 for a non-resource URL.
    pub(crate) fn forbidden_path(user: &str, verb: &str, path: &str) -> Status {
        Status::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
        )
        .with_details(Details::default())
    }

    pub(crate) fn not_found() -> Status {
        Status::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(Details::default())
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Status {
        Status::new(400, "BadRequest", message)
    }

    /// 422 for invalid `ListOptions`, e.g. `sendInitialEvents` with the WatchList gate off.
    pub(crate) fn invalid_list_options(field: &str, detail: &str) -> Status {
        let message =
            format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: Forbidden: {detail}");
        Status::new(422, "Invalid", message).with_details(Details {
            group: Some("meta.k8s.io".into()),
            kind: Some("ListOptions".into()),
            causes: Some(vec![Cause {
                reason: Some("FieldValueForbidden".into()),
                message: Some(format!("Forbidden: {detail}")),
                field: Some(field.into()),
            }]),
            ..Details::default()
        })
    }

    /// The ERROR object of a watch from a resourceVersion older than the watch cache.
    pub(crate) fn too_old_resource_version(requested: u64, oldest: u64) -> Status {
        Status::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 410 of a `resourceVersionMatch=Exact` list below the compaction point.
    pub(crate) fn list_rv_too_old() -> Status {
        Status::new(
            410,
            "Expired",
            "The resourceVersion for the provided list is too old.",
        )
    }

    /// 410 for a `continue` token older than the compaction, carrying a fresh token.
    pub(crate) fn continue_expired(fresh_token: String) -> Status {
        Status::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        )
        .with_continue(fresh_token)
    }

    /// 504 for a resourceVersion the server has not reached yet.
    pub(crate) fn too_large_resource_version(requested: u64, current: u64) -> Status {
        Status::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        )
        .with_details(Details {
            causes: Some(vec![Cause {
                reason: Some("ResourceVersionTooLarge".into()),
                message: Some("Too large resource version".into()),
                ..Cause::default()
            }]),
            retry_after_seconds: Some(1),
            ..Details::default()
        })
    }

    /// The Status for an injected failure with HTTP code `code`.
    pub(crate) fn injected(code: u16) -> Status {
        let (reason, message) = match code {
            429 => (
                "TooManyRequests",
                "The server has received too many requests and has asked us to try again later"
                    .to_string(),
            ),
            500 => (
                "InternalError",
                "Internal error occurred: injected fault".to_string(),
            ),
            503 => (
                "ServiceUnavailable",
                "The server is currently unable to handle the request".to_string(),
            ),
            504 => (
                "Timeout",
                "The server was unable to return a response in the time allotted, but may still be processing the request".to_string(),
            ),
            401 => return Status::unauthorized(),
            _ => ("", format!("injected fault (HTTP {code})")),
        };
        let details = match code {
            500 => Some(Details {
                causes: Some(vec![Cause {
                    message: Some("injected fault".into()),
                    ..Cause::default()
                }]),
                ..Details::default()
            }),
            429 | 503 | 504 => Some(Details {
                retry_after_seconds: Some(1),
                ..Details::default()
            }),
            _ => None,
        };
        let mut s = Status::new(code, reason, message);
        s.0.details = details;
        s
    }

    /// Compact JSON, as on the wire for a non-curl client.
    pub(crate) fn to_json(&self, pretty: bool) -> Vec<u8> {
        let r = if pretty {
            serde_json::to_vec_pretty(self)
        } else {
            serde_json::to_vec(self)
        };
        // Serializing plain strings and numbers cannot fail.
        r.unwrap_or_default()
    }
}

/// The decoded form of a continue token: `{"v":"meta.k8s.io/v1","rv":587,"start":"ns/name\u0000"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContinueToken {
    pub(crate) v: String,
    pub(crate) rv: i64,
    pub(crate) start: String,
}

impl ContinueToken {
    pub(crate) fn encode(rv: i64, start: String) -> String {
        let t = ContinueToken {
            v: "meta.k8s.io/v1".into(),
            rv,
            start,
        };
        base64url_encode(serde_json::to_string(&t).unwrap_or_default().as_bytes())
    }

    pub(crate) fn decode(token: &str) -> Result<ContinueToken, String> {
        let raw = base64url_decode(token).ok_or_else(|| "illegal base64 data".to_string())?;
        let t: ContinueToken = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
        if t.v != "meta.k8s.io/v1" {
            return Err("server does not recognize this encoded key".into());
        }
        Ok(t)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 URL-safe alphabet without padding (Go's `base64.RawURLEncoding`).
pub(crate) fn base64url_encode(data: &[u8]) -> String {
    base64_encode_with(data, B64, false)
}

/// Standard base64 with padding (for kubeconfig `*-data` fields).
pub fn base64_std_encode(data: &[u8]) -> String {
    base64_encode_with(
        data,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

fn base64_encode_with(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// RFC 3339 UTC timestamp with second precision, e.g. `2026-11-22T02:26:14Z`.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A random RFC 4122 version-4 style uid.
pub(crate) fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.finish()
    };
    let (a, b) = (word(), word());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_matches_recording() {
        // From endpoints-list-limit2-page1.json.
        let rec = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NTg3LCJzdGFydCI6InNob3AtY2FuYXJ5L2VtcHR5XHUwMDAwIn0";
        let t = ContinueToken::decode(rec).unwrap();
        assert_eq!(t.rv, 587);
        assert_eq!(t.start, "shop-canary/empty\0");
        assert_eq!(ContinueToken::encode(587, t.start), rec);
        // The fresh token of error-410-expired-continue.http.
        let fresh = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0Ijoic2hvcC1jYW5hcnkvZW1wdHlcdTAwMDAifQ";
        assert_eq!(
            ContinueToken::encode(-1, "shop-canary/empty\0".into()),
            fresh
        );
    }

    #[test]
    fn timestamp_and_uid_shapes() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z'));
        let uid = new_uid();
        assert_eq!(uid.len(), 36, "{uid}");
        assert_ne!(uid, new_uid());
        assert_eq!(base64_std_encode(b"ab"), "YWI=");
    }
}
