//! The items the macros' generated code names, as `::cachefw::__private::…`
//! (or through the path given as `crate = …`). Not a public API: it changes
//! in lockstep with `cachefw-macros`. Re-exports only: the behaviour lives
//! in the modules named.

pub use std::option::Option;
pub use std::time::Duration;
pub use std::{concat, module_path};

pub use crate::call::{CacheRef, Call, KeyWriter, Writes, installed_or_warn};
pub use crate::key::push_part;
pub use crate::policy::Options;
pub use crate::shape::{Dispatch, Tag, caching_none, declare, own_receiver};
