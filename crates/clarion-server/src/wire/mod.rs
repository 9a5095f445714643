//! The JSON shapes of the Assistants API v2: objects the server returns ([`objects`]),
//! request bodies it accepts ([`requests`]), and list pages ([`list`]).
//!
//! Objects are built as JSON values rather than mirrored structs: the API has many fields
//! that Clarion has no use for but SDKs expect to find (`tool_resources`, `truncation_strategy`…),
//! and one function per object keeps every field and its source in one readable place.

pub mod list;
pub mod objects;
pub mod requests;
