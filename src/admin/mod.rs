//! The admin surface: the `admin_listen` listener (metrics, health) and the metrics it serves.
pub mod listener;
pub mod metrics;
