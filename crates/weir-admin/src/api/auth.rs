//! Who may call the Admin API: the client's address (`allow_admin`), then
//! its key (`admin_key`), taken as APISIX takes it.

use std::net::IpAddr;

use http::request::Parts;
use http::Method;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use weir_config::{AdminKey, AdminRole, AdminSettings};

/// Why a request was refused (APISIX's `description`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No key in the request.
    Missing,
    /// A key that is none of `admin_key`.
    Wrong,
    /// A viewer key on a method other than GET.
    ViewerMethod,
}

impl Refusal {
    /// APISIX's `description`.
    pub fn description(self) -> &'static str {
        match self {
            Refusal::Missing => "missing apikey",
            Refusal::Wrong => "wrong apikey",
            Refusal::ViewerMethod => "invalid method for role viewer",
        }
    }
}

/// Whether `ip` may connect at all.
pub fn allowed(settings: &AdminSettings, ip: IpAddr) -> bool {
    settings.allow_admin.iter().any(|c| c.contains(ip))
}

/// The key a request carries: `?api_key=`, then `X-API-KEY`, then the
/// cookie `x_api_key` (APISIX's order).
fn presented<'a>(parts: &'a Parts, api_key_arg: Option<&'a str>) -> Option<&'a [u8]> {
    if let Some(k) = api_key_arg {
        return Some(k.as_bytes());
    }
    if let Some(v) = parts.headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "x_api_key")
        .map(|(_, value)| value.as_bytes())
}

/// The key of the request, checked against `keys`: every key is compared
/// (by SHA-256 digest, in constant time), so the time taken tells nothing
/// about how close a guess was.
pub fn check<'k>(
    parts: &Parts,
    api_key_arg: Option<&str>,
    keys: &'k [AdminKey],
) -> Result<&'k AdminKey, Refusal> {
    let Some(given) = presented(parts, api_key_arg) else {
        return Err(Refusal::Missing);
    };
    let given = Sha256::digest(given);
    let mut found = None;
    for k in keys {
        let digest = Sha256::digest(k.key.expose().as_bytes());
        let same: bool = digest.as_slice().ct_eq(given.as_slice()).into();
        if same && found.is_none() {
            found = Some(k);
        }
    }
    let key = found.ok_or(Refusal::Wrong)?;
    if key.role == AdminRole::Viewer && parts.method != Method::GET {
        return Err(Refusal::ViewerMethod);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::discovery_resolve::Secret;

    fn keys() -> Vec<AdminKey> {
        vec![
            AdminKey {
                name: "admin".into(),
                key: Secret::new("a-key"),
                role: AdminRole::Admin,
            },
            AdminKey {
                name: "viewer".into(),
                key: Secret::new("v-key"),
                role: AdminRole::Viewer,
            },
        ]
    }

    fn parts(method: &str, header: Option<(&str, &str)>) -> Parts {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/apisix/admin/routes");
        if let Some((n, v)) = header {
            b = b.header(n, v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn keys_come_from_the_argument_the_header_or_the_cookie() {
        let keys = keys();
        assert_eq!(
            check(&parts("GET", None), None, &keys).unwrap_err(),
            Refusal::Missing
        );
        assert_eq!(
            check(&parts("GET", Some(("x-api-key", "nope"))), None, &keys).unwrap_err(),
            Refusal::Wrong
        );
        assert_eq!(
            check(&parts("PUT", Some(("x-api-key", "a-key"))), None, &keys)
                .unwrap()
                .name,
            "admin"
        );
        assert_eq!(
            check(&parts("PUT", None), Some("a-key"), &keys)
                .unwrap()
                .name,
            "admin"
        );
        let cookie = parts("GET", Some(("cookie", "a=b; x_api_key=v-key")));
        assert_eq!(check(&cookie, None, &keys).unwrap().name, "viewer");
        assert_eq!(
            check(&parts("DELETE", Some(("x-api-key", "v-key"))), None, &keys).unwrap_err(),
            Refusal::ViewerMethod
        );
    }
}
