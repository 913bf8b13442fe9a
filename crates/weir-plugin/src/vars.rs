//! APISIX's request variables (nginx's `$` variables), as used by `vars`
//! expressions, `_meta.filter` and plugins' `key` settings.

use std::borrow::Cow;

use weir_http::RequestView;

use crate::{Conn, PluginState};

/// The value of variable `name` for a request, if it has one.
///
/// Known: `arg_<name>`, `http_<name>` (`_` stands for `-`), `cookie_<name>`,
/// `uri`, `request_uri`, `args` / `query_string`, `host`, `request_method`,
/// `scheme`, `remote_addr`, `remote_port`, `server_addr`, `server_port`,
/// `consumer_name`, `consumer_group_id`, `route_id`, `server_name` (the
/// Host), `hostname` (this machine's), `content_type`, `content_length`.
/// `server_protocol`. Not known here (always absent): `route_name`,
/// `service_id`, `service_name`.
pub fn lookup<'a>(
    name: &str,
    view: &'a dyn RequestView,
    conn: &Conn,
    state: &PluginState,
    route_id: &str,
) -> Option<Cow<'a, str>> {
    if let Some(arg) = name.strip_prefix("arg_") {
        // Decoded, as APISIX's (ngx.req.get_uri_args).
        return weir_http::view::query_arg(view.query(), arg).map(weir_http::view::percent_decode);
    }
    if let Some(field) = name.strip_prefix("http_") {
        let field = field.replace('_', "-");
        return view.header(&field).map(String::from_utf8_lossy);
    }
    if let Some(c) = name.strip_prefix("cookie_") {
        return weir_http::view::cookie(view, c).map(String::from_utf8_lossy);
    }
    let owned = |s: String| Some(Cow::Owned(s));
    match name {
        // nginx's $uri: decoded and normalised (what routes match on).
        "uri" => Some(weir_http::uri::match_path(view.path())),
        "server_protocol" => Some(Cow::Borrowed(view.version())),
        "request_uri" => Some(Cow::Borrowed(view.path_and_query())),
        "args" | "query_string" => view.query().map(Cow::Borrowed),
        "content_type" => view.header("content-type").map(String::from_utf8_lossy),
        "content_length" => view.header("content-length").map(String::from_utf8_lossy),
        "hostname" => hostname().map(Cow::Borrowed),
        "consumer_group_id" => state
            .consumer
            .as_ref()
            .and_then(|c| c.group_id.as_ref())
            .map(|g| Cow::Owned(g.to_string())),
        "host" | "server_name" => view.host().map(|h| {
            let h = String::from_utf8_lossy(h);
            match h.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                    Cow::Owned(name.to_ascii_lowercase())
                }
                _ => Cow::Owned(h.to_ascii_lowercase()),
            }
        }),
        "request_method" => Some(Cow::Borrowed(view.method())),
        "scheme" => Some(Cow::Borrowed(if conn.tls { "https" } else { "http" })),
        "remote_addr" => owned(state.real_ip.unwrap_or(conn.remote.ip()).to_string()),
        "remote_port" => owned(conn.remote.port().to_string()),
        "server_addr" => owned(conn.local.ip().to_string()),
        "server_port" => owned(conn.local.port().to_string()),
        "consumer_name" => state
            .consumer
            .as_ref()
            .map(|c| Cow::Owned(c.username.to_string())),
        "route_id" => owned(route_id.to_owned()),
        _ => None,
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`), read once.
fn hostname() -> Option<&'static str> {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
    })
    .as_deref()
}

/// The variables a response-side condition may use (`response-rewrite`'s
/// `vars`): what [`response_lookup`] knows.
pub fn is_response_var(name: &str) -> bool {
    name.strip_prefix("upstream_http_")
        .or_else(|| name.strip_prefix("sent_http_"))
        .is_some_and(|field| !field.is_empty())
        || matches!(
            name,
            "status" | "upstream_status" | "consumer_name" | "consumer_group_id" | "hostname"
        )
}

/// The value of response variable `name`: `status` (as the client will get
/// it), `upstream_status` (the node's; absent for weir's own answers),
/// `upstream_http_<name>` (a node's response field), `sent_http_<name>` (a
/// field of the response, a node's or weir's), `consumer_name`,
/// `consumer_group_id`, `hostname`.
pub fn response_lookup<'a>(name: &str, resp: &'a crate::ResponseCtx<'_>) -> Option<Cow<'a, str>> {
    if let Some(field) = name.strip_prefix("sent_http_") {
        return resp
            .header(&field.replace('_', "-"))
            .map(String::from_utf8_lossy);
    }
    if let Some(field) = name.strip_prefix("upstream_http_") {
        if !resp.from_node() {
            return None;
        }
        return resp
            .header(&field.replace('_', "-"))
            .map(String::from_utf8_lossy);
    }
    match name {
        "status" => Some(Cow::Owned(resp.status().to_string())),
        "upstream_status" => resp
            .from_node()
            .then(|| Cow::Owned(resp.original_status().to_string())),
        "consumer_name" => resp.consumer().map(|c| Cow::Owned(c.username.to_string())),
        "consumer_group_id" => resp
            .consumer()
            .and_then(|c| c.group_id.as_ref())
            .map(|g| Cow::Owned(g.to_string())),
        "hostname" => hostname().map(Cow::Borrowed),
        _ => None,
    }
}
