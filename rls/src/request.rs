//! `RequestBounds`: what a well-formed `RateLimitRequest` looks like. Anything else is
//! answered `INVALID_ARGUMENT` with a message naming the offending field.

use prost::Message;
use proto::rls::RateLimitRequest;
use proto::types::RateLimitUnit;

use crate::error::RlsError;

/// Bounds on a request's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBounds {
    /// Most descriptors per request.
    pub max_descriptors: usize,
    /// Most entries per descriptor.
    pub max_entries: usize,
    /// Largest encoded request, in bytes.
    pub max_bytes: usize,
}

impl Default for RequestBounds {
    fn default() -> Self {
        RequestBounds::DEFAULT
    }
}

impl RequestBounds {
    /// The bounds `rls serve` applies unless told otherwise.
    pub const DEFAULT: RequestBounds = RequestBounds {
        max_descriptors: 64,
        max_entries: 32,
        max_bytes: 64 * 1024,
    };

    /// Checks `request`, naming the first fault found.
    pub fn validate(&self, request: &RateLimitRequest) -> Result<(), RlsError> {
        let invalid = |message: String| Err(RlsError::InvalidRequest(message));
        if request.domain.is_empty() {
            return invalid("rate limit domain must not be empty".into());
        }
        if request.descriptors.is_empty() {
            return invalid("rate limit descriptor list must not be empty".into());
        }
        if request.descriptors.len() > self.max_descriptors {
            return invalid(format!(
                "request has {} descriptors; at most {} are allowed",
                request.descriptors.len(),
                self.max_descriptors
            ));
        }
        for (i, descriptor) in request.descriptors.iter().enumerate() {
            if descriptor.entries.is_empty() {
                return invalid(format!("descriptors[{i}] has no entries"));
            }
            if descriptor.entries.len() > self.max_entries {
                return invalid(format!(
                    "descriptors[{i}] has {} entries; at most {} are allowed",
                    descriptor.entries.len(),
                    self.max_entries
                ));
            }
            if let Some(j) = descriptor.entries.iter().position(|e| e.key.is_empty()) {
                return invalid(format!("descriptors[{i}].entries[{j}] has an empty key"));
            }
            if let Some(limit) = &descriptor.limit {
                match RateLimitUnit::try_from(limit.unit) {
                    Ok(RateLimitUnit::Unknown) | Err(_) => {
                        return invalid(format!(
                            "descriptors[{i}].limit has no valid unit ({})",
                            limit.unit
                        ));
                    }
                    Ok(_) => {}
                }
            }
        }
        // Measured last: encoded_len walks the message, and the checks above bound it.
        let bytes = request.encoded_len();
        if bytes > self.max_bytes {
            return invalid(format!(
                "request is {bytes} bytes; at most {} are allowed",
                self.max_bytes
            ));
        }
        Ok(())
    }
}
