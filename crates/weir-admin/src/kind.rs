//! The resources of the Admin API: their names, keys, and which methods
//! APISIX accepts on each.

use http::Method;

/// One resource type of the Admin API (`/apisix/admin/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `routes`
    Route,
    /// `services`
    Service,
    /// `upstreams`
    Upstream,
    /// `consumers`, keyed by username.
    Consumer,
    /// `consumers/{username}/credentials/{id}`.
    Credential,
    /// `consumer_groups`
    ConsumerGroup,
    /// `plugin_configs`
    PluginConfig,
    /// `global_rules`
    GlobalRule,
    /// `ssls`
    Ssl,
    /// `plugin_metadata/{plugin}`, keyed by plugin name.
    PluginMetadata,
}

/// Every kind, in the order lists and the state file use.
pub const KINDS: &[Kind] = &[
    Kind::Route,
    Kind::Service,
    Kind::Upstream,
    Kind::Consumer,
    Kind::Credential,
    Kind::ConsumerGroup,
    Kind::PluginConfig,
    Kind::GlobalRule,
    Kind::Ssl,
    Kind::PluginMetadata,
];

/// APISIX's resources weir does not have, and why: the Admin API answers
/// `400` with this (as an APISIX whose stream mode is off answers for
/// `stream_routes`), never an empty list or "Key not found".
pub fn not_supported(segment: &str) -> Option<&'static str> {
    Some(match segment {
        "stream_routes" => "weir does not support stream_routes: it has no stream (TCP/UDP) proxy, only HTTP (as an APISIX whose stream mode is disabled)",
        "protos" => "weir does not support protos: it has no grpc-transcode plugin, which is what protos are for",
        "secrets" => "weir does not support secrets: it has no secret managers (Vault, AWS, GCP); use ${{VAR}} environment variables in the configuration file instead",
        _ => return None,
    })
}

/// The prefix of every key, as in APISIX's etcd.
pub const PREFIX: &str = "/apisix";

impl Kind {
    /// The path segment (`routes`); credentials live under `consumers`.
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Route => "routes",
            Kind::Service => "services",
            Kind::Upstream => "upstreams",
            Kind::Consumer | Kind::Credential => "consumers",
            Kind::ConsumerGroup => "consumer_groups",
            Kind::PluginConfig => "plugin_configs",
            Kind::GlobalRule => "global_rules",
            Kind::Ssl => "ssls",
            Kind::PluginMetadata => "plugin_metadata",
        }
    }

    /// The resource named by an Admin API path segment.
    pub fn from_segment(s: &str) -> Option<Kind> {
        Some(match s {
            "routes" => Kind::Route,
            "services" => Kind::Service,
            "upstreams" => Kind::Upstream,
            "consumers" => Kind::Consumer,
            "consumer_groups" => Kind::ConsumerGroup,
            "plugin_configs" => Kind::PluginConfig,
            "global_rules" => Kind::GlobalRule,
            "ssls" => Kind::Ssl,
            "plugin_metadata" => Kind::PluginMetadata,
            "credentials" => Kind::Credential,
            _ => return None,
        })
    }

    /// APISIX's word for one of them, used in messages (`consumer group`).
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Route => "route",
            Kind::Service => "service",
            Kind::Upstream => "upstream",
            Kind::Consumer => "consumer",
            Kind::Credential => "credential",
            Kind::ConsumerGroup => "consumer group",
            Kind::PluginConfig => "plugin config",
            Kind::GlobalRule => "global rule",
            Kind::Ssl => "ssl",
            Kind::PluginMetadata => "plugin_metadata",
        }
    }

    /// The field of the value that holds the id (`username` for consumers).
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::Consumer => "username",
            _ => "id",
        }
    }

    /// Whether APISIX serves `method` on this resource.
    pub fn allows(self, method: &Method) -> bool {
        let no_post = matches!(
            self,
            Kind::Consumer
                | Kind::Credential
                | Kind::ConsumerGroup
                | Kind::PluginConfig
                | Kind::GlobalRule
                | Kind::PluginMetadata
        );
        let no_patch = matches!(
            self,
            Kind::Consumer | Kind::Credential | Kind::PluginMetadata
        );
        match *method {
            Method::POST => !no_post,
            Method::PATCH => !no_patch,
            Method::GET | Method::PUT | Method::DELETE => true,
            _ => false,
        }
    }

    /// The key of one resource: `/apisix/routes/1`,
    /// `/apisix/consumers/jack/credentials/c1` (`owner` is the username).
    pub fn key(self, owner: Option<&str>, id: &str) -> String {
        match (self, owner) {
            (Kind::Credential, Some(user)) => {
                format!("{PREFIX}/consumers/{user}/credentials/{id}")
            }
            _ => format!("{PREFIX}/{}/{id}", self.segment()),
        }
    }

    /// The kind, owner and id a key names.
    pub fn parse_key(key: &str) -> Option<(Kind, Option<String>, String)> {
        let rest = key.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let (segment, id) = rest.split_once('/')?;
        if segment == "consumers" {
            if let Some((user, cred)) = id.split_once("/credentials/") {
                return Some((Kind::Credential, Some(user.to_owned()), cred.to_owned()));
            }
        }
        let kind = Kind::from_segment(segment).filter(|k| *k != Kind::Credential)?;
        (!id.is_empty() && !id.contains('/')).then(|| (kind, None, id.to_owned()))
    }

    /// Field names `filter=` may compare (APISIX's `list_filter_fields`).
    pub fn filter_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Route => &["service_id", "upstream_id"],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for (kind, owner, id, key) in [
            (Kind::Route, None, "1", "/apisix/routes/1"),
            (Kind::Consumer, None, "jack", "/apisix/consumers/jack"),
            (
                Kind::Credential,
                Some("jack"),
                "c1",
                "/apisix/consumers/jack/credentials/c1",
            ),
            (
                Kind::PluginMetadata,
                None,
                "key-auth",
                "/apisix/plugin_metadata/key-auth",
            ),
        ] {
            assert_eq!(kind.key(owner, id), key);
            assert_eq!(
                Kind::parse_key(key),
                Some((kind, owner.map(str::to_owned), id.to_owned()))
            );
        }
        assert_eq!(Kind::parse_key("/apisix/routes/"), None);
        assert_eq!(Kind::parse_key("/apisix/credentials/x"), None);
        assert_eq!(Kind::parse_key("/other/routes/1"), None);
    }

    #[test]
    fn methods_as_apisix() {
        assert!(Kind::Route.allows(&Method::POST));
        assert!(!Kind::Consumer.allows(&Method::POST));
        assert!(!Kind::Consumer.allows(&Method::PATCH));
        assert!(Kind::ConsumerGroup.allows(&Method::PATCH));
        assert!(!Kind::GlobalRule.allows(&Method::POST));
        assert!(!Kind::PluginMetadata.allows(&Method::PATCH));
    }
}
