//! weir's configuration: the typed model, loading from YAML or JSON, and
//! validation whose errors name the field at fault.
//!
//! ```
//! let config = weir_config::load_default().unwrap();
//! assert_eq!(config.routes.len(), 1);
//! ```

pub mod discovery;
pub mod discovery_resolve;
mod error;
pub mod ip_match;
mod load;
pub mod model;
pub mod path;
mod validate;
pub mod vars;

pub use error::{FieldError, FieldErrors, LoadError};
pub use load::{load_default, load_file, load_str, EMBEDDED_DEFAULT};
pub use model::*;
pub use validate::{check_host, check_host_pattern, parse_node_key, KNOWN_PLUGINS};
