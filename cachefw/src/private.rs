//! The items the macros' generated code names, as `::cachefw::__private::…`
//! (or through the path given as `crate = …`). Not a public API: it changes
//! in lockstep with `cachefw-macros`. Re-exports only: the behaviour lives
//! in the modules named. The Cassandra adapter's hooks are in `adapter.rs`.

pub use std::option::Option;
pub use std::sync::atomic::AtomicBool;
pub use std::time::Duration;
pub use std::{concat, file, line, module_path};

pub use crate::call::{
    Attribute, CacheRef, Call, KeyWriter, Writes, installed_or_warn, render_key,
};
pub use crate::keep::TtlFrom;
pub use crate::key::push_part;
pub use crate::options::Options;
pub use crate::shape::{Dispatch, Tag, caching_none, declare, own_receiver};
pub use std::string::String;
