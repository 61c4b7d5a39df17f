//! Tokens: HS256 JWTs signed with a secret shared with the work app, and the secret's storage.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use tally_shared::StaffId;

/// The audience every Tally token names.
pub const AUDIENCE: &str = "tally";
/// Clock skew tolerated between the work app and the relay.
pub const LEEWAY_SECS: u64 = 30;

/// The claims of a Tally token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The staff member.
    pub sub: String,
    /// Audience: always [`AUDIENCE`].
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
}

/// Why a token was refused. The wire never says which, to give forgers nothing to learn from.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Expired (past the leeway).
    #[error("token expired")]
    Expired,
    /// Bad signature, wrong audience, malformed, or a `sub` that is not a staff id.
    #[error("invalid token")]
    Invalid,
}

/// Signs and verifies tokens. Debug output never shows the secret.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<secret>)")
    }
}

impl Keys {
    /// Keys from a secret.
    pub fn new(secret: &[u8]) -> Self {
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// Mints a token for a staff member.
    pub fn mint(&self, staff: &StaffId, ttl: Duration) -> String {
        let iat = now_secs();
        let claims = Claims {
            sub: staff.to_string(),
            aud: AUDIENCE.into(),
            iat,
            exp: iat + ttl.as_secs(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Signs arbitrary claims (tests, and work apps written in Rust).
    pub fn sign(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Verifies a token: HS256 only, the Tally audience, not expired, `sub` a valid staff id.
    pub fn verify(&self, token: &str) -> Result<StaffId, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iat", "sub", "aud"]);
        v.leeway = LEEWAY_SECS;
        let data = decode::<Claims>(token, &self.decoding, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        if data.claims.iat > now_secs() + LEEWAY_SECS {
            return Err(TokenError::Invalid);
        }
        StaffId::new(data.claims.sub).map_err(|_| TokenError::Invalid)
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The signing secret: `TALLY_SECRET` if set, else `DATA/secret`, generated (mode 0600) on
/// first use.
pub fn load_secret(data: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(s) = std::env::var("TALLY_SECRET") {
        anyhow::ensure!(s.len() >= 32, "TALLY_SECRET must be at least 32 bytes");
        return Ok(s.into_bytes());
    }
    let path = data.join("secret");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 32 => Ok(bytes),
        Ok(_) => anyhow::bail!("{} is shorter than 32 bytes", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use rand::Rng;
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut bytes = [0u8; 32];
            rand::rng().fill(&mut bytes);
            let secret = hex::encode(bytes).into_bytes();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(&secret)?;
            f.sync_all()?;
            Ok(secret)
        }
        Err(e) => Err(e.into()),
    }
}

/// Parses a duration like `8h`, `30m`, `45s` or `2d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("bad duration unit in {s:?} (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let alice = StaffId::new("alice").unwrap();
        let token = keys.mint(&alice, Duration::from_secs(60));
        assert_eq!(keys.verify(&token).unwrap(), alice);
        let other = Keys::new(b"another secret another secret 12");
        assert!(matches!(other.verify(&token), Err(TokenError::Invalid)));
        assert!(matches!(keys.verify("not.a.token"), Err(TokenError::Invalid)));
        assert_eq!(format!("{keys:?}"), "Keys(<secret>)");
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("8x").is_err());
    }
}
