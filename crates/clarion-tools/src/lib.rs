//! Tool executors for Clarion flows: built-in, HTTP and command tools (coming next).
