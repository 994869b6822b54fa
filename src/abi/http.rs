//! The HTTP filter kind's ABI values: what each stream hook returns to Envoy, one type per hook
//! family (their numbers overlap: `StopIteration` of a headers hook and `StopIterationAndBuffer`
//! of a body hook are both 1, so a bare `u32` would let one pass for the other).
//!
//! The `extern "C"` hooks return `u32` to Envoy; the conversion happens there only
//! (`u32::from`).

/// What a request or response headers hook returns
/// (`envoy_dynamic_module_type_on_http_filter_request_headers_status`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadersStatus {
    /// Pass the headers on.
    Continue = 0,
    /// Hold the headers until the filter continues the stream.
    StopIteration = 1,
    /// Pass the headers on without ending the stream.
    ContinueAndDontEndStream = 2,
    /// Hold the headers and buffer the whole body.
    StopAllIterationAndBuffer = 3,
    /// Hold the headers and buffer the body with flow control.
    StopAllIterationAndWatermark = 4,
}

/// What a request or response body hook returns
/// (`envoy_dynamic_module_type_on_http_filter_request_body_status`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyStatus {
    /// Pass the data on.
    Continue = 0,
    /// Hold and buffer the data.
    StopIterationAndBuffer = 1,
    /// Hold and buffer the data with flow control.
    StopIterationAndWatermark = 2,
    /// Hold without buffering.
    StopIterationNoBuffer = 3,
}

/// What a request or response trailers hook returns
/// (`envoy_dynamic_module_type_on_http_filter_request_trailers_status`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TrailersStatus {
    /// Pass the trailers on.
    Continue = 0,
    /// Hold them.
    StopIteration = 1,
}

/// What the local-reply hook returns (`envoy_dynamic_module_type_on_http_filter_local_reply_status`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LocalReplyStatus {
    /// Let Envoy send its local reply.
    Continue = 0,
    /// Send it, then reset the stream.
    #[allow(dead_code)] // Named for completeness; jisr never asks for it.
    ContinueAndResetStream = 1,
}

macro_rules! to_u32 {
    ($($t:ty),*) => {$(
        impl From<$t> for u32 {
            #[inline]
            fn from(s: $t) -> u32 {
                s as u32
            }
        }
    )*};
}
to_u32!(HeadersStatus, BodyStatus, TrailersStatus, LocalReplyStatus);

/// How Envoy reset the main stream when the module asks it to (`reset_stream`'s reason).
pub(crate) const RESET_LOCAL: u32 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers Envoy's ABI header gives each status (checked against Envoy 1.38–1.40).
    #[test]
    fn statuses_have_the_abi_numbers() {
        let h = [
            HeadersStatus::Continue,
            HeadersStatus::StopIteration,
            HeadersStatus::ContinueAndDontEndStream,
            HeadersStatus::StopAllIterationAndBuffer,
            HeadersStatus::StopAllIterationAndWatermark,
        ];
        assert_eq!(h.map(u32::from), [0, 1, 2, 3, 4]);
        let b = [
            BodyStatus::Continue,
            BodyStatus::StopIterationAndBuffer,
            BodyStatus::StopIterationAndWatermark,
            BodyStatus::StopIterationNoBuffer,
        ];
        assert_eq!(b.map(u32::from), [0, 1, 2, 3]);
        assert_eq!(
            [TrailersStatus::Continue, TrailersStatus::StopIteration].map(u32::from),
            [0, 1]
        );
        assert_eq!(
            [
                LocalReplyStatus::Continue,
                LocalReplyStatus::ContinueAndResetStream
            ]
            .map(u32::from),
            [0, 1]
        );
    }
}
