//! Payment credentials in `Authorization` (and MPP's `Payment-Authorization`): the
//! Machine Payments Protocol (the `Payment` scheme, read as a payment by [`super::mpp`])
//! and L402 (`L402`, formerly `LSAT`), which Purser cannot price or decide yet (SPEC §1),
//! so finding one is enough to refuse the request.
//!
//! Schemes are compared case-insensitively (RFC 9110 §11.1). `Authorization` holds one
//! credential, but a list (`Bearer x, Payment y`) or a repeated header is read item by
//! item: a server that takes the last one must not be handed a payment Purser skipped.

use super::Protocol;

/// The payment protocol of the first payment credential in one `Authorization` value.
pub fn payment_scheme(value: &[u8]) -> Option<Protocol> {
    payment_schemes(value).next()
}

/// The payment protocol of every payment credential in one `Authorization` value.
pub fn payment_schemes(value: &[u8]) -> impl Iterator<Item = Protocol> + '_ {
    value.split(|byte| *byte == b',').filter_map(|item| {
        let item = trim_start(item);
        let end = item
            .iter()
            .position(|byte| matches!(byte, b' ' | b'\t' | b'='))
            .unwrap_or(item.len());
        scheme_protocol(&item[..end])
    })
}

fn scheme_protocol(scheme: &[u8]) -> Option<Protocol> {
    if scheme.eq_ignore_ascii_case(b"payment") {
        Some(Protocol::Mpp)
    } else if scheme.eq_ignore_ascii_case(b"l402") || scheme.eq_ignore_ascii_case(b"lsat") {
        Some(Protocol::L402)
    } else {
        None
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| !matches!(byte, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_schemes_in_any_case_and_position() {
        for (value, protocol) in [
            (&b"Payment eyJhbGciOi"[..], Some(Protocol::Mpp)),
            (b"payment eyJ", Some(Protocol::Mpp)),
            (b"PAYMENT", Some(Protocol::Mpp)),
            (b"\tPayMent\tabc", Some(Protocol::Mpp)),
            (b"Bearer abc, Payment def", Some(Protocol::Mpp)),
            (b"L402 macaroon:preimage", Some(Protocol::L402)),
            (b"lsat mac:pre", Some(Protocol::L402)),
            (b"Bearer abc", None),
            (b"Basic dXNlcjpwYXNz", None),
            (b"Paymentx abc", None),
            (b"", None),
            (b",,,", None),
        ] {
            assert_eq!(payment_scheme(value), protocol, "{value:?}");
        }
        let both: Vec<Protocol> = payment_schemes(b"L402 a:b, Bearer c, Payment d").collect();
        assert_eq!(both, [Protocol::L402, Protocol::Mpp]);
    }
}
