//! What weir's authentication plugins share: the `realm` setting and its
//! challenge, the 401 answer, the `anonymous_consumer` fallback, and
//! APISIX's lenient base64 (nginx's `ngx.decode_base64`).

use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use http::{header, HeaderValue, StatusCode};
use weir_plugin::{BuildCtx, ConfigError, Consumer, Flow, LocalReply, RequestCtx};

/// How an authentication plugin answers a request it could not
/// authenticate.
pub struct Failure {
    challenge: HeaderValue,
    anonymous: Option<Anonymous>,
}

enum Anonymous {
    Found(Arc<Consumer>),
    Missing,
}

impl Failure {
    /// `scheme realm="<realm>"` as the challenge, and the anonymous consumer
    /// looked up by name. The realm is checked as APISIX's schema does:
    /// 1 to 128 printable ASCII characters, without `"` and `\`.
    pub fn new(
        scheme: &str,
        realm: &str,
        anonymous: Option<&str>,
        ctx: &BuildCtx<'_>,
    ) -> Result<Failure, ConfigError> {
        let printable = realm
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if realm.is_empty() || realm.len() > 128 || !printable {
            return Err(ConfigError::at(
                "realm",
                "must be 1 to 128 printable ASCII characters, without '\"' and '\\'",
            ));
        }
        if anonymous == Some("") {
            return Err(ConfigError::at("anonymous_consumer", "must not be empty"));
        }
        let challenge = HeaderValue::from_str(&format!("{scheme} realm=\"{realm}\""))
            .map_err(|_| ConfigError::at("realm", "not valid in a header field"))?;
        let anonymous = anonymous.map(|name| match ctx.consumer(name) {
            Some(c) => Anonymous::Found(c),
            None => Anonymous::Missing,
        });
        Ok(Failure {
            challenge,
            anonymous,
        })
    }

    /// 401 with the challenge and `{"message":...}`.
    pub fn reject(&self, message: &str) -> Flow {
        Flow::Reply(
            LocalReply::message(StatusCode::UNAUTHORIZED, message)
                .with_header(header::WWW_AUTHENTICATE, self.challenge.clone()),
        )
    }

    /// Without valid credentials: the anonymous consumer if one is
    /// configured (`Some(consumer)`: the caller attaches it), else the 401.
    /// A configured anonymous consumer that does not exist gives APISIX's
    /// "Invalid user authorization".
    pub fn fallback(&self, message: &str) -> Result<Arc<Consumer>, Flow> {
        match &self.anonymous {
            None => Err(self.reject(message)),
            Some(Anonymous::Found(c)) => Ok(c.clone()),
            Some(Anonymous::Missing) => Err(self.reject("Invalid user authorization")),
        }
    }
}

/// Attaches `consumer`, or answers.
pub fn attach(req: &mut RequestCtx<'_>, consumer: Result<Arc<Consumer>, Flow>) -> Flow {
    match consumer {
        Ok(c) => {
            req.authenticate(c);
            Flow::Continue
        }
        Err(flow) => flow,
    }
}

/// Standard base64 as nginx decodes it: padding optional, anything from the
/// first `=` on ignored; `None` for any other character outside the
/// alphabet or an impossible length.
pub fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let end = s.iter().position(|&b| b == b'=').unwrap_or(s.len());
    LENIENT.decode(&s[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_decoded_as_nginx_does() {
        assert_eq!(decode_base64(b"Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64(b"Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64(b"Zm8").unwrap(), b"fo");
        assert_eq!(decode_base64(b"Zm8=junk").unwrap(), b"fo");
        assert!(decode_base64(b"Zm 8").is_none());
        assert!(decode_base64(b"Z").is_none());
    }

    #[test]
    fn realms_are_checked() {
        let ctx = BuildCtx::empty();
        assert!(Failure::new("Basic", "basic", None, &ctx).is_ok());
        for bad in ["", "a\"b", "a\\b", "é", &"x".repeat(129)] {
            let e = Failure::new("Basic", bad, None, &ctx).err().unwrap();
            assert_eq!(e.path, "realm");
        }
        let e = Failure::new("Basic", "b", Some(""), &ctx).err().unwrap();
        assert_eq!(e.path, "anonymous_consumer");
    }
}
