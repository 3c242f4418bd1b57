//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">`, keyed with the bytes of a `whsec_` secret.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const PREFIX: &str = "whsec_";
/// How far a receiver lets `webhook-timestamp` drift from its clock (replay protection).
pub const TOLERANCE_SECS: i64 = 300;

/// A new subscription's secret: 32 random bytes, as `whsec_<base64>`.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

fn key(secret: &str) -> Option<hmac::Key> {
    let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
    let bytes = STANDARD.decode(encoded).ok()?;
    Some(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

/// The `webhook-signature` header value for one message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = key(secret).expect("secrets are generated as whsec_<base64>");
    let mut context = hmac::Context::with_key(&key);
    context.update(format!("{id}.{timestamp}.").as_bytes());
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// No `v1` signature in the header matches.
    BadSignature,
    /// The timestamp is missing, malformed or outside the tolerance.
    BadTimestamp,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::BadSignature => "bad-signature",
            Self::BadTimestamp => "bad-timestamp",
        }
    }
}

/// What a receiver does: checks the timestamp, then any of the space-separated signatures,
/// in constant time.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Verdict {
    let Ok(sent_at) = timestamp.parse::<i64>() else {
        return Verdict::BadTimestamp;
    };
    if (now - sent_at).abs() > TOLERANCE_SECS {
        return Verdict::BadTimestamp;
    }
    let Some(key) = key(secret) else {
        return Verdict::BadSignature;
    };
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    let matches = signatures.split(' ').any(|candidate| {
        candidate
            .strip_prefix("v1,")
            .and_then(|sig| STANDARD.decode(sig).ok())
            .is_some_and(|sig| hmac::verify(&key, &content, &sig).is_ok())
    });
    if matches {
        Verdict::Valid
    } else {
        Verdict::BadSignature
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn signs_the_specifications_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verifies_its_own_signature_and_refuses_a_changed_body_or_stale_timestamp() {
        let secret = generate_secret();
        let signature = sign(&secret, "msg_1", 1_000, b"{}");
        assert_eq!(
            verify(&secret, "msg_1", "1000", &signature, b"{}", 1_010),
            Verdict::Valid
        );
        let with_other = format!("v1,AAAA {signature}");
        assert_eq!(
            verify(&secret, "msg_1", "1000", &with_other, b"{}", 1_010),
            Verdict::Valid
        );
        assert_eq!(
            verify(&secret, "msg_1", "1000", &signature, b"{ }", 1_010),
            Verdict::BadSignature
        );
        assert_eq!(
            verify(&secret, "msg_2", "1000", &signature, b"{}", 1_010),
            Verdict::BadSignature
        );
        assert_eq!(
            verify(
                &generate_secret(),
                "msg_1",
                "1000",
                &signature,
                b"{}",
                1_010
            ),
            Verdict::BadSignature
        );
        assert_eq!(
            verify(
                &secret,
                "msg_1",
                "1000",
                &signature,
                b"{}",
                1_000 + TOLERANCE_SECS + 1
            ),
            Verdict::BadTimestamp
        );
        assert_eq!(
            verify(&secret, "msg_1", "soon", &signature, b"{}", 1_000),
            Verdict::BadTimestamp
        );
    }

    #[test]
    fn secrets_are_distinct_and_32_bytes() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert_eq!(
            STANDARD
                .decode(a.strip_prefix(PREFIX).unwrap())
                .unwrap()
                .len(),
            32
        );
    }
}
