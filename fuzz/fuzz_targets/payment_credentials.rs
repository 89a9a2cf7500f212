//! `Authorization` values (`purser::detect::credentials`): MPP's `Payment` scheme and
//! L402/LSAT are found in any case and list position; what is found is really there.

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser::detect::credentials::payment_scheme;
use purser::detect::Protocol;

fuzz_target!(|data: &[u8]| {
    let Some(protocol) = payment_scheme(data) else {
        return;
    };
    let schemes: &[&[u8]] = match protocol {
        Protocol::Mpp => &[b"payment"],
        Protocol::L402 => &[b"l402", b"lsat"],
        other => panic!("not an Authorization protocol: {other:?}"),
    };
    let named = data.split(|b| *b == b',').any(|item| {
        let item = item.trim_ascii_start();
        schemes.iter().any(|scheme| {
            item.len() >= scheme.len()
                && item[..scheme.len()].eq_ignore_ascii_case(scheme)
                && item
                    .get(scheme.len())
                    .is_none_or(|b| matches!(b, b' ' | b'\t' | b'='))
        })
    });
    assert!(named, "{protocol:?} found in {data:?}");
});
