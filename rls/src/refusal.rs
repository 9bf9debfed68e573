//! `Undecodable`: the gRPC requests tonic's decoder refuses before the service sees them —
//! over `--max-request-bytes`, or bytes that are no request message — answered
//! `INVALID_ARGUMENT` with a message naming the fault, and counted as our own refusals are.
//!
//! tonic refuses a message over its decoding limit from the length in the message's
//! header, before it buffers the body (as `OUT_OF_RANGE`), and bytes prost cannot decode as
//! `INTERNAL`. Both are the caller's fault: `INVALID_ARGUMENT`, as the proxy and the docs
//! expect of malformed requests.

use http::Response;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::util::MapResponseLayer;

use crate::error::ErrorKind;
use crate::outcome;

/// How prost's decoding errors begin (`prost::DecodeError`'s text), as tonic passes them on.
const UNDECODABLE: &str = "failed to decode Protobuf message";

/// The layer that answers decoder refusals `INVALID_ARGUMENT`; `max_bytes` is the decoding
/// limit the services were given (`--max-request-bytes`).
pub fn undecodable(
    max_bytes: usize,
) -> MapResponseLayer<impl Fn(Response<Body>) -> Response<Body> + Clone> {
    MapResponseLayer::new(move |mut response: Response<Body>| {
        refuse(&mut response, max_bytes);
        response
    })
}

/// Rewrites a response whose status (in its headers: tonic answers refusals with headers
/// alone) is a decoder's refusal. Answers carry their status in trailers and are left
/// alone at the cost of one header lookup.
fn refuse(response: &mut Response<Body>, max_bytes: usize) {
    if !response.headers().contains_key("grpc-status") {
        return;
    }
    let Some(status) = Status::from_header_map(response.headers()) else {
        return;
    };
    let Some(refusal) = of_decoder(&status, max_bytes) else {
        return;
    };
    // A message of our own text always makes a valid header.
    let _ = refusal.add_header(response.headers_mut());
    outcome::count_refusal(ErrorKind::InvalidRequest);
}

/// The `INVALID_ARGUMENT` answer to `status` when it is a decoder's refusal (a message
/// over `max_bytes`, or bytes that are no message); `None` for any other status. A stream's
/// messages (RLQS) meet these refusals as they read, not in the response's headers.
pub fn of_decoder(status: &Status, max_bytes: usize) -> Option<Status> {
    let message = match status.code() {
        Code::OutOfRange => too_large(status.message(), max_bytes),
        Code::Internal if status.message().starts_with(UNDECODABLE) => status.message().into(),
        _ => return None,
    };
    Some(Status::invalid_argument(message))
}

/// The refusal of a request over `max_bytes`, with its size when tonic's message says it
/// (`... found N bytes ...`), in the words the other request bounds use.
fn too_large(tonic_message: &str, max_bytes: usize) -> String {
    let found = tonic_message
        .split_once("found ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok());
    match found {
        Some(bytes) => format!("request is {bytes} bytes; at most {max_bytes} are allowed"),
        None => {
            format!("request is over {max_bytes} bytes, the most allowed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_refusal_names_the_size_and_the_limit() {
        let tonic = "Error, decoded message length too large: found 4194304 bytes, the limit \
                     is: 65536 bytes";
        assert_eq!(
            too_large(tonic, 65536),
            "request is 4194304 bytes; at most 65536 are allowed"
        );
        assert_eq!(
            too_large("too large", 10),
            "request is over 10 bytes, the most allowed"
        );
    }

    #[test]
    fn only_decoder_refusals_are_rewritten() {
        let mut ours = Status::internal("no quota files").into_http::<Body>();
        refuse(&mut ours, 10);
        let status = Status::from_header_map(ours.headers()).expect("status");
        assert_eq!(status.code(), Code::Internal);

        let mut undecodable =
            Status::internal(format!("{UNDECODABLE}: invalid wire type")).into_http::<Body>();
        refuse(&mut undecodable, 10);
        let status = Status::from_header_map(undecodable.headers()).expect("status");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().ends_with("invalid wire type"));
    }
}
