//! [`RawCodec`]: sends pre-encoded `RateLimitRequest` bytes as they are and decodes only the
//! answer's `overall_code`, so that the harness spends its CPU on load, not on protobuf.

use prost::Message;
use prost::bytes::{BufMut, Bytes};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The gRPC method every RLS serves.
pub const SHOULD_RATE_LIMIT: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// The first field of `RateLimitResponse` (`overall_code`, tag 1); prost skips the rest of
/// the message unread.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct OverallCode {
    /// `RateLimitResponse.Code`: 0 UNKNOWN, 1 OK, 2 OVER_LIMIT.
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
}

/// Frame buffers sized for rate limit messages (tens to hundreds of bytes; larger ones grow
/// the buffer), instead of tonic's default 8 KiB allocated per call.
fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// Codec of pre-encoded requests and [`OverallCode`] answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

/// Copies the request bytes into the frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEncoder;

/// Decodes [`OverallCode`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CodeDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = OverallCode;
    type Encoder = RawEncoder;
    type Decoder = CodeDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> CodeDecoder {
        CodeDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

impl Decoder for CodeDecoder {
    type Item = OverallCode;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<OverallCode>, Status> {
        let answer = OverallCode::decode(src)
            .map_err(|e| Status::internal(format!("undecodable RateLimitResponse: {e}")))?;
        Ok(Some(answer))
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::rls::RateLimitResponse;
    use proto::rls::rate_limit_response::{Code, DescriptorStatus};

    #[test]
    fn the_lean_answer_reads_the_overall_code_of_a_full_response() {
        let full = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![DescriptorStatus {
                code: Code::OverLimit as i32,
                limit_remaining: 7,
                ..DescriptorStatus::default()
            }],
            ..RateLimitResponse::default()
        };
        let lean = OverallCode::decode(full.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(lean.overall_code, Code::OverLimit as i32);
    }
}
