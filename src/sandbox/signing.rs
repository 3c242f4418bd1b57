use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// A key pair made at start: signs the sandbox's caller tokens and publishes its JWKS.
/// Tests and benchmarks use it to act as an identity provider too.
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    public: Jwk,
}

impl SigningKey {
    /// An ES256 (P-256) key: quick to make, what the sandbox signs with.
    pub fn generate(kid: impl Into<String>) -> anyhow::Result<Self> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("cannot generate an ES256 key"))?;
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
        )
    }

    /// An RS256 key of 2048 bits, as Entra signs with.
    pub fn generate_rsa(kid: impl Into<String>) -> anyhow::Result<Self> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
        let pkcs8 = pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        );
        Self::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem.as_bytes())?,
        )
    }

    fn new(kid: impl Into<String>, algorithm: Algorithm, key: EncodingKey) -> anyhow::Result<Self> {
        let kid = kid.into();
        let mut public = Jwk::from_encoding_key(&key, algorithm)?;
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            kid,
            algorithm,
            key,
            public,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, as a JWKS entry.
    pub fn public_jwk(&self) -> Jwk {
        self.public.clone()
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public_jwk()],
        }
    }

    pub fn sign(&self, claims: &impl Serialize) -> anyhow::Result<String> {
        self.sign_with_header(claims, |_| {})
    }

    /// Signs after `adjust` has changed the header (drop the `kid`, say).
    pub fn sign_with_header(
        &self,
        claims: &impl Serialize,
        adjust: impl FnOnce(&mut Header),
    ) -> anyhow::Result<String> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        adjust(&mut header);
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }
}
