//! The size bounds of MPP data, checked before anything is decoded.

/// Largest `request` or `opaque` (base64url characters), receipt or echoed parameter
/// Purser decodes: the SDKs' own limit.
pub const MAX_PARAM_BYTES: usize = 16 * 1024;
/// Largest credential (`Authorization` value) Purser decodes: the SDKs' own limit (it
/// echoes a request of up to [`MAX_PARAM_BYTES`]).
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;
/// Largest `WWW-Authenticate` field value read.
pub const MAX_CHALLENGE_FIELD_BYTES: usize = 64 * 1024;
/// Most `Payment` challenges read from one answer.
pub const MAX_CHALLENGES_PER_ANSWER: usize = 32;
