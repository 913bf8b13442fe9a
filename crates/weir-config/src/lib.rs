//! weir's configuration: the typed model, loading from YAML or JSON, and
//! validation whose errors name the field at fault.
//!
//! ```
//! let config = weir_config::load_default().unwrap();
//! assert_eq!(config.routes.len(), 1);
//! ```
//!
//! - [`model`]: the typed configuration (APISIX's resources and field names).
//! - [`load_str`] / [`load_file`] (and `_with` variants taking
//!   [`LoadOptions`]): parse, substitute `${{VAR}}`, apply the `#END` rule
//!   ([`standalone`]), validate, report every error at once.
//! - [`validate_config`]: the same checks on a configuration built in code.
//! - [`resolve`]: each route's effective configuration (service, plugin
//!   config and route merged as APISIX does).
//! - [`vars`] / [`ip_match`]: route conditions, evaluated by the engine.
//! - [`check_files`]: the file-system checks `weir run` and `weir validate`
//!   share (readable CA files, writable access log).
//! - [`warm`]: the warm-start state in `gateway.state_dir` (atomic writes,
//!   the last installed configuration).
//! - [`plugin_check`]: the seam where the plugin catalogue checks plugin
//!   configurations.

pub mod discovery;
pub mod discovery_resolve;
mod error;
mod files;
pub mod ip_match;
mod load;
pub mod model;
pub mod path;
pub mod plugin_check;
pub mod resolve;
pub mod standalone;
mod validate;
pub mod vars;
pub mod warm;

pub use error::{FieldError, FieldErrors, LoadError};
pub use files::check_files;
pub use load::{
    decode_resource, load_default, load_file, load_file_with, load_str, load_str_with, normalize,
    standalone_body, LoadOptions, EMBEDDED_DEFAULT,
};
pub use model::*;
pub use plugin_check::{AnyPlugin, PluginCheck, PluginSite, AUTH_PLUGINS};
pub use validate::{check_host, check_host_pattern, parse_node_key, validate_config};
