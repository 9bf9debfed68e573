//! `rls query`: one ShouldRateLimit call from the command line, answer printed readably.

use std::fmt::Write;

use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::Entry;
use proto::rls::rate_limit_response::{Code, DescriptorStatus};
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use proto::rls::{RateLimitRequest, RateLimitResponse};

use crate::cli::QueryArgs;

/// Builds the request `rls query` sends.
pub fn request_from(args: &QueryArgs) -> RateLimitRequest {
    RateLimitRequest {
        domain: args.domain.clone(),
        descriptors: args
            .descriptors
            .iter()
            .map(|d| parse_descriptor(d))
            .collect(),
        hits_addend: args.hits,
    }
}

/// `k=v,k2=v2` as a descriptor.
pub fn parse_descriptor(text: &str) -> RateLimitDescriptor {
    let entries = text
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Entry {
                key: key.to_string(),
                value: value.to_string(),
            }
        })
        .collect();
    RateLimitDescriptor {
        entries,
        ..RateLimitDescriptor::default()
    }
}

/// Sends the request and returns the text to print.
pub async fn run(args: &QueryArgs) -> anyhow::Result<String> {
    let endpoint = if args.addr.contains("://") {
        args.addr.clone()
    } else {
        format!("http://{}", args.addr)
    };
    let mut client = RateLimitServiceClient::connect(endpoint.clone())
        .await
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot connect to {endpoint}")))?;
    let request = request_from(args);
    let answer = client
        .should_rate_limit(request.clone())
        .await
        .map_err(|status| anyhow::anyhow!("{}: {}", status.code(), status.message()))?
        .into_inner();
    if args.json {
        return Ok(serde_json::to_string_pretty(&answer)? + "\n");
    }
    Ok(render(&request, &answer))
}

/// The answer, one line per descriptor.
pub fn render(request: &RateLimitRequest, answer: &RateLimitResponse) -> String {
    let mut out = format!("{}\n", code_name(answer.overall_code));
    for (i, status) in answer.statuses.iter().enumerate() {
        let entries = request.descriptors.get(i).map_or_else(String::new, |d| {
            let pairs: Vec<String> = d
                .entries
                .iter()
                .map(|e| format!("{}={}", e.key, e.value))
                .collect();
            pairs.join(",")
        });
        let _ = writeln!(out, "  [{i}] {entries}: {}", describe_status(status));
    }
    for header in &answer.response_headers_to_add {
        let _ = writeln!(out, "  header {}: {}", header.key, header.value);
    }
    out
}

fn describe_status(status: &DescriptorStatus) -> String {
    let mut text = code_name(status.code).to_string();
    match &status.current_limit {
        Some(limit) => {
            let unit = limit.unit().as_str_name().to_ascii_lowercase();
            let _ = write!(text, "  limit {}/{unit}", limit.requests_per_unit);
            if !limit.name.is_empty() {
                let _ = write!(text, " ({})", limit.name);
            }
            let _ = write!(text, "  remaining {}", status.limit_remaining);
        }
        None if status.limit_remaining == u32::MAX => text.push_str("  unlimited"),
        None => text.push_str("  no limit applies"),
    }
    if let Some(reset) = &status.duration_until_reset {
        let _ = write!(
            text,
            "  reset {}.{:03}s",
            reset.seconds,
            reset.nanos / 1_000_000
        );
    }
    text
}

fn code_name(code: i32) -> &'static str {
    match Code::try_from(code) {
        Ok(Code::Ok) => "OK",
        Ok(Code::OverLimit) => "OVER_LIMIT",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_text_becomes_entries_in_order() {
        let d = parse_descriptor("path=/a=b,method=GET,flag");
        let pairs: Vec<(&str, &str)> = d
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(pairs, [("path", "/a=b"), ("method", "GET"), ("flag", "")]);
    }
}
