//! The one fact read back from a certificate issued elsewhere: the end of its validity.

use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The `notAfter` of the first certificate in a PEM chain.
pub fn not_after(chain_pem: &str) -> Result<SystemTime, String> {
    let certificate = CertificateDer::from_pem_slice(chain_pem.as_bytes())
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    validity_end(&certificate).ok_or_else(|| "the certificate's validity cannot be read".to_owned())
}

/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
/// validity SEQUENCE { notBefore, notAfter }, ... }, ... }
fn validity_end(der: &[u8]) -> Option<SystemTime> {
    let (_, certificate, _) = element(der)?;
    let (_, mut tbs, _) = element(certificate)?;
    let (tag, _, rest) = element(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        tbs = element(tbs)?.2;
    }
    let (_, validity, _) = element(tbs)?;
    let (_, _, rest) = element(validity)?;
    let (tag, time, _) = element(rest)?;
    time_of(tag, std::str::from_utf8(time).ok()?)
}

/// One DER element: its tag, its content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || input.len() < octets {
            return None;
        }
        let (bytes, rest) = input.split_at(octets);
        input = rest;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    (input.len() >= length).then(|| (tag, &input[..length], &input[length..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn time_of(tag: u8, text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let year: i32 = text.get(..2)?.parse().ok()?;
            (
                if year >= 50 { 1900 + year } else { 2000 + year },
                &text[2..],
            )
        }
        0x18 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |at: usize| -> Option<u8> { rest.get(at..at + 2)?.parse().ok() };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(field(0)?).ok()?, field(2)?)
            .ok()?;
    let clock = time::Time::from_hms(field(4)?, field(6)?, field(8)?).ok()?;
    let seconds = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_certificate_issued_here_is_read_back() {
        let dir = preview_testing::TempDir::new("x509-not-after");
        let ca = crate::LocalCa::load_or_create(dir.path()).expect("ca");
        let issued = ca
            .issue(
                &["web.example.test".to_owned()],
                Duration::from_secs(7 * 86_400),
            )
            .expect("issued");
        assert_eq!(not_after(&issued.chain_pem), Ok(issued.not_after));
    }

    #[test]
    fn both_time_forms_are_read() {
        let utc = time_of(0x17, "491231235959Z").expect("utc");
        let generalized = time_of(0x18, "20491231235959Z").expect("generalized");
        assert_eq!(utc, generalized);
        // 50 and later are the 1900s: 1970-01-02 is a day after the epoch.
        assert_eq!(
            time_of(0x17, "700102000000Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400))
        );
        assert_eq!(time_of(0x17, "5001010000"), None);
    }

    #[test]
    fn what_is_not_a_certificate_is_refused() {
        assert!(not_after("not pem").is_err());
        assert_eq!(validity_end(&[0x30, 0x82, 0xff]), None);
    }
}
