//! What the limiting plugins (`limit-count`, `limit-req`, `limit-conn`)
//! share: the key a request is counted under, the rejection, the policy
//! (counted in this process, or in Redis for every replica), and the
//! namespace that makes a configuration change start from fresh counts.

pub mod local;
pub mod redis;

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use weir_plugin::{ConfigError, LocalReply, RequestCtx};

/// `key_type`: how `key` names what requests are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    /// `key` is one variable's name (`remote_addr`, `http_x_api_key`,
    /// `consumer_name`).
    #[default]
    Var,
    /// `key` is a text with `$variables` in it (`$remote_addr $http_x_user`).
    VarCombination,
    /// `key` is the key itself: every request shares one count.
    Constant,
}

/// A compiled `key` + `key_type`.
#[derive(Debug, Clone)]
pub enum RequestKey {
    /// The client's address (`remote_addr`, the most common key), written
    /// without looking the variable up by name.
    RemoteAddr,
    /// One variable.
    Var(String),
    /// Literal text and variables, in order.
    Combination(Vec<Part>),
    /// The same for every request.
    Constant(String),
}

/// A piece of a `var_combination` key.
#[derive(Debug, Clone)]
pub enum Part {
    /// Text as written.
    Text(String),
    /// A `$variable`.
    Var(String),
}

impl RequestKey {
    /// Compiles `key` of `key_type`; `at` is the field's path for errors.
    pub fn new(key: &str, key_type: KeyType, at: &str) -> Result<RequestKey, ConfigError> {
        if key.is_empty() {
            return Err(ConfigError::at(at, "must not be empty"));
        }
        Ok(match key_type {
            KeyType::Var => match key.strip_prefix('$').unwrap_or(key) {
                "remote_addr" => RequestKey::RemoteAddr,
                name => RequestKey::Var(name.to_owned()),
            },
            KeyType::Constant => RequestKey::Constant(key.to_owned()),
            KeyType::VarCombination => {
                let mut parts = Vec::new();
                let mut rest = key;
                while let Some(i) = rest.find('$') {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_owned()));
                    }
                    let name_len = rest[i + 1..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len() - i - 1);
                    if name_len == 0 {
                        return Err(ConfigError::at(
                            at,
                            "a `$` must be followed by a variable name",
                        ));
                    }
                    parts.push(Part::Var(rest[i + 1..i + 1 + name_len].to_owned()));
                    rest = &rest[i + 1 + name_len..];
                }
                if !rest.is_empty() {
                    parts.push(Part::Text(rest.to_owned()));
                }
                if !parts.iter().any(|p| matches!(p, Part::Var(_))) {
                    return Err(ConfigError::at(
                        at,
                        "a var_combination key needs at least one `$variable`",
                    ));
                }
                RequestKey::Combination(parts)
            }
        })
    }

    /// Appends the request's key to `out`; false (and `out` as it was)
    /// when its variables are all missing or empty.
    pub fn write(&self, ctx: &RequestCtx<'_>, out: &mut String) -> bool {
        match self {
            RequestKey::RemoteAddr => write_ip(ctx.remote_ip(), out),
            RequestKey::Constant(k) => out.push_str(k),
            RequestKey::Var(name) => match ctx.var(name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(&v),
                None => return false,
            },
            RequestKey::Combination(parts) => {
                let start = out.len();
                let mut found = false;
                for p in parts {
                    match p {
                        Part::Text(t) => out.push_str(t),
                        Part::Var(name) => {
                            if let Some(v) = ctx.var(name).filter(|v| !v.is_empty()) {
                                found = true;
                                out.push_str(&v);
                            }
                        }
                    }
                }
                if !found {
                    out.truncate(start);
                    return false;
                }
            }
        }
        true
    }

    /// Appends the request's key to `out`, falling back to the client
    /// address when the configured one is missing (as APISIX, which logs
    /// it).
    pub fn write_or_remote(&self, ctx: &RequestCtx<'_>, out: &mut String) {
        if !self.write(ctx, out) {
            write_ip(ctx.remote_ip(), out);
        }
    }
}

/// Appends `ip` as text (as `remote_addr` shows it).
fn write_ip(ip: std::net::IpAddr, out: &mut String) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "{ip}");
}

/// Runs `f` with an empty string to build a counter's key in: a buffer the
/// thread reuses, so counting a request allocates nothing for its key.
pub fn with_key_buffer<R>(f: impl FnOnce(&mut String) -> R) -> R {
    thread_local! {
        static BUFFER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    BUFFER.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            f(&mut buf)
        }
        // Only if `f` itself counts a request (it does not): a fresh one.
        Err(_) => f(&mut String::new()),
    })
}

/// `rejected_code` and `rejected_msg`.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The status (APISIX: 200 to 599, default 503).
    pub code: StatusCode,
    /// `{"error_msg": ...}` when set; otherwise weir's default body for the
    /// status.
    pub message: Option<String>,
}

impl Rejection {
    /// From the configuration's `rejected_code` / `rejected_msg`.
    pub fn new(code: u16, message: Option<String>) -> Result<Rejection, ConfigError> {
        if !(200..=599).contains(&code) {
            return Err(ConfigError::at(
                "rejected_code",
                "must be between 200 and 599",
            ));
        }
        if message.as_deref() == Some("") {
            return Err(ConfigError::at("rejected_msg", "must not be empty"));
        }
        let code = StatusCode::from_u16(code)
            .map_err(|_| ConfigError::at("rejected_code", "not a status code"))?;
        Ok(Rejection { code, message })
    }

    /// The answer to a refused request.
    pub fn reply(&self) -> LocalReply {
        match &self.message {
            Some(m) => LocalReply::error_msg(self.code, m),
            None => {
                LocalReply::error_msg(self.code, self.code.canonical_reason().unwrap_or("refused"))
            }
        }
    }
}

/// APISIX's Redis connection fields (see [`redis::RedisFields`]).
pub const REDIS_FIELDS: &[&str] = &[
    "redis_host",
    "redis_port",
    "redis_username",
    "redis_password",
    "redis_database",
    "redis_timeout",
    "redis_ssl",
    "redis_ssl_verify",
    "redis_keepalive_timeout",
    "redis_keepalive_pool",
    "redis_cluster_nodes",
    "redis_cluster_name",
    "redis_cluster_ssl",
    "redis_cluster_ssl_verify",
];

/// Refuses fields that are neither the plugin's (`own`) nor Redis
/// connection fields: the configuration is decoded with the Redis fields
/// flattened in, which serde cannot check by itself.
pub fn check_fields(conf: &Value, own: &[&str]) -> Result<(), ConfigError> {
    let Some(map) = conf.as_object() else {
        return Err(ConfigError::whole("must be an object"));
    };
    for k in map.keys() {
        if !own.contains(&k.as_str()) && !REDIS_FIELDS.contains(&k.as_str()) {
            let mut expected: Vec<&str> = own.iter().chain(REDIS_FIELDS).copied().collect();
            expected.sort_unstable();
            return Err(ConfigError::at(
                k.as_str(),
                format!(
                    "unknown field `{k}`, expected one of {}",
                    expected.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// APISIX's answer when a limit's store fails (limit-req, limit-conn): a
/// bare 500.
pub fn store_failed() -> LocalReply {
    Rejection {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        message: None,
    }
    .reply()
}

/// Where counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// In this process (exact across its worker threads; each replica
    /// counts alone).
    #[default]
    Local,
    /// One Redis server, shared by every replica.
    Redis,
    /// A Redis cluster, shared by every replica.
    RedisCluster,
}

/// A short stable digest of a plugin's configuration: part of every
/// counter's key, so a changed configuration starts from fresh counts while
/// an unchanged one (across reloads and replicas) keeps them.
pub fn conf_digest(conf: &Value) -> String {
    let canonical = canonical_json(conf);
    let digest = Sha256::digest(canonical.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted, whatever order they were written in.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digests_ignore_key_order_and_see_values() {
        let a = conf_digest(&json!({"count": 2, "time_window": 60, "key": "remote_addr"}));
        let b = conf_digest(&json!({"key": "remote_addr", "time_window": 60, "count": 2}));
        let c = conf_digest(&json!({"key": "remote_addr", "time_window": 60, "count": 3}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 12);
    }

    #[test]
    fn var_combination_keys_parse() {
        let k =
            RequestKey::new("$remote_addr:$http_x_user", KeyType::VarCombination, "key").unwrap();
        match k {
            RequestKey::Combination(p) => assert_eq!(p.len(), 3),
            other => panic!("{other:?}"),
        }
        let e = RequestKey::new("plain", KeyType::VarCombination, "key").unwrap_err();
        assert_eq!(e.path, "key");
        let e = RequestKey::new("a $ b", KeyType::VarCombination, "rules[0].key").unwrap_err();
        assert_eq!(e.path, "rules[0].key");
        assert!(RequestKey::new("", KeyType::Var, "key").is_err());
    }

    #[test]
    fn rejections_are_checked() {
        assert!(Rejection::new(199, None).is_err());
        assert!(Rejection::new(503, Some(String::new())).is_err());
        let r = Rejection::new(429, Some("slow down".into())).unwrap();
        assert_eq!(r.reply().status, 429);
        assert_eq!(&r.reply().body[..], br#"{"error_msg":"slow down"}"#);
    }
}
