//! The one boxed future of the public traits.
//!
//! Extension points ([`KeyResolver`](crate::discovery::resolve::KeyResolver),
//! [`Fetch`](crate::discovery::resolve::Fetch), [`ReplayStore`](crate::replay::ReplayStore)) return
//! it; they run only off the warm path (a key fetch, a shared store), so one allocation there
//! is cheaper than a generic future in every signature.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
