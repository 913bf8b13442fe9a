//! What the Admin API wrote: one JSON value per key (APISIX's etcd layout),
//! each with its decoded resource and its created / modified index, and the
//! index counter. Plain data: the store persists it, the merge serves it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use weir_config::{
    Consumer, ConsumerGroup, Credential, FieldError, FieldErrors, GlobalRule, PluginConfig, Route,
    Service, Ssl, Upstream,
};

use crate::kind::Kind;

/// Fields the Admin API sets itself.
pub const TIME_FIELDS: [&str; 2] = ["create_time", "update_time"];

/// A resource decoded into weir's model.
// Held in an `Arc`, one per stored resource: the variants' sizes matter not.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Resource {
    /// A route.
    Route(Route),
    /// A service.
    Service(Service),
    /// An upstream.
    Upstream(Upstream),
    /// A consumer.
    Consumer(Consumer),
    /// A credential (its `consumer` filled from the key).
    Credential(Credential),
    /// A consumer group.
    ConsumerGroup(ConsumerGroup),
    /// A plugin config.
    PluginConfig(PluginConfig),
    /// A global rule.
    GlobalRule(GlobalRule),
    /// A certificate.
    Ssl(Ssl),
    /// Plugin metadata: the object without `id`.
    PluginMetadata(Value),
}

impl Resource {
    /// Decodes a stored value (with its `id` and times) of `kind`; errors
    /// name fields below the resource.
    pub fn decode(kind: Kind, owner: Option<&str>, value: &Value) -> Result<Resource, FieldErrors> {
        let Value::Object(map) = value else {
            return Err(FieldErrors(vec![FieldError::new(
                "",
                "must be a JSON object",
            )]));
        };
        let mut map: Map<String, Value> = map.clone();
        for f in TIME_FIELDS {
            map.remove(f);
        }
        if kind == Kind::PluginMetadata {
            map.remove("id");
            return Ok(Resource::PluginMetadata(Value::Object(map)));
        }
        let v = Value::Object(map);
        use weir_config::decode_resource as d;
        Ok(match kind {
            Kind::Route => Resource::Route(d(v)?),
            Kind::Service => Resource::Service(d(v)?),
            Kind::Upstream => Resource::Upstream(d(v)?),
            Kind::Consumer => Resource::Consumer(d(v)?),
            Kind::Credential => {
                let mut c: Credential = d(v)?;
                c.consumer = owner.unwrap_or_default().to_owned();
                Resource::Credential(c)
            }
            Kind::ConsumerGroup => Resource::ConsumerGroup(d(v)?),
            Kind::PluginConfig => Resource::PluginConfig(d(v)?),
            Kind::GlobalRule => Resource::GlobalRule(d(v)?),
            Kind::Ssl => Resource::Ssl(d(v)?),
            Kind::PluginMetadata => Resource::PluginMetadata(v),
        })
    }
}

/// One stored resource.
#[derive(Clone)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// The consumer a credential belongs to.
    pub owner: Option<String>,
    /// Its id (username for consumers, plugin name for metadata).
    pub id: String,
    /// The value as stored and served: the body written, with `id` and
    /// `create_time` / `update_time`.
    pub value: Arc<Value>,
    /// The decoded resource.
    pub resource: Arc<Resource>,
    /// Index of the write that created it.
    pub created: u64,
    /// Index of the write that last changed it.
    pub modified: u64,
}

/// Everything the Admin API wrote, by key, and the last index given.
#[derive(Clone, Default)]
pub struct AdminState {
    /// Resources by key (`/apisix/routes/1`), in key order as etcd lists them.
    pub entries: BTreeMap<String, Arc<Entry>>,
    /// The last index given to a write (createdIndex / modifiedIndex, and
    /// the ids POST generates); never goes back.
    pub index: u64,
}

/// Keys only: values hold credentials and private keys.
impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("index", &self.index)
            .field("keys", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AdminState {
    /// The resources of one kind (credentials of every consumer for
    /// `Kind::Credential`).
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.values().filter(move |e| e.kind == kind)
    }
}
