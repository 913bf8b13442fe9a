//! Protocol-neutral HTTP pieces shared by both transports (the hand-written
//! HTTP/1.1 fast path and hyper) and by plugins:
//!
//! - [`view`]: a borrowed, read-only view of a request head, implemented over
//!   `httparse`'s parsed head and over hyper's `Parts`, so one algorithm
//!   (routing inputs, consistent hashing, plugins) serves both;
//! - [`fields`]: the one policy for hop-by-hop and forwarding header fields;
//! - [`edits`]: header changes decided by plugins, applied where a head is
//!   written (no header map is built on the fast path);
//! - [`reply`]: a response weir makes itself (errors, plugin answers), with
//!   APISIX's body shapes;
//! - [`chunked`]: HTTP/1.1's chunked transfer coding, scanned in passing
//!   (and decoded for body filters and plugins that read bodies);
//! - [`reframe`]: a chunked request body re-framed canonically on its way
//!   to the node (chunk heads rewritten, extensions and forbidden trailers
//!   dropped, malformed framing refused), the data never copied.
#![forbid(unsafe_code)]

pub mod chunked;
pub mod edits;
pub mod fields;
pub mod reframe;
pub mod reply;
pub mod uri;
pub mod view;

pub use edits::HeaderEdits;
pub use reply::LocalReply;
pub use view::{HeaderValues, RawHead, RawResponseHead, RequestView, ResponseView};
