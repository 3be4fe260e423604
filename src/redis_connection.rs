//! The one way this crate's Redis stores connect: a lazy connection manager that retries
//! once, quickly, and bounds every connection attempt and every reply, so that a Redis
//! that is down or slow costs a request a bounded wait and a `503`, never a hang.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::ConfigError;

/// A connection manager for `url`: replies within `operation_timeout`, connection attempts
/// within `connect_timeout`. Must run inside a Tokio runtime; it does not wait for Redis.
pub(crate) fn manager(
    url: &str,
    operation_timeout: Duration,
    connect_timeout: Duration,
) -> Result<ConnectionManager, ConfigError> {
    if operation_timeout.is_zero() || connect_timeout.is_zero() {
        return Err(ConfigError::new("Redis timeouts must be positive"));
    }
    let client = redis::Client::open(url).map_err(|_| ConfigError::new("the Redis URL is not valid"))?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(200))
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(operation_timeout));
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|_| ConfigError::new("the Redis connection manager could not be created"))
}
