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
/// The longest token lifetime (`exp - iat`) accepted by default: a leaked token is worth at
/// most this long.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

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
    /// Not valid before (seconds since the epoch), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// A verified token: whose it is, and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The staff member.
    pub staff: StaffId,
    /// When it stops being accepted: its `exp` plus the clock-skew leeway (seconds since the
    /// epoch). An open socket is closed then.
    pub valid_until: u64,
}

impl Verified {
    /// How long from now until the token is refused.
    pub fn valid_for(&self) -> Duration {
        Duration::from_secs(self.valid_until.saturating_sub(now_secs()))
    }
}

/// Why a token was refused. The wire never says which, to give forgers nothing to learn from.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Expired (past the leeway).
    #[error("token expired")]
    Expired,
    /// Its lifetime is longer than the relay accepts.
    #[error("token lifetime over the relay's maximum")]
    TooLong,
    /// Bad signature, wrong audience, malformed, or a `sub` that is not a staff id.
    #[error("invalid token")]
    Invalid,
}

/// Signs and verifies tokens. Debug output never shows the secret.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    max_ttl: Duration,
    leeway: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<secret>)")
    }
}

impl Keys {
    /// Keys from a secret, accepting tokens that live at most `max_ttl`.
    pub fn new(secret: &[u8], max_ttl: Duration) -> Self {
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            max_ttl,
            leeway: LEEWAY_SECS,
        }
    }

    /// The same keys with another clock-skew leeway (tests use none).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.as_secs();
        self
    }

    /// Mints a token for a staff member.
    pub fn mint(&self, staff: &StaffId, ttl: Duration) -> String {
        let iat = now_secs();
        let claims = Claims {
            sub: staff.to_string(),
            aud: AUDIENCE.into(),
            iat,
            exp: iat + ttl.as_secs(),
            nbf: None,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Signs arbitrary claims (tests, and work apps written in Rust).
    pub fn sign(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Verifies a token: HS256 only, the Tally audience, not expired, not before its `nbf`,
    /// not issued in the future, a lifetime within the maximum, `sub` a valid staff id.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iat", "sub", "aud"]);
        v.validate_nbf = true;
        v.leeway = self.leeway;
        let data = decode::<Claims>(token, &self.decoding, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        let c = data.claims;
        if c.iat > now_secs() + self.leeway {
            return Err(TokenError::Invalid);
        }
        if c.exp.saturating_sub(c.iat) > self.max_ttl.as_secs() {
            return Err(TokenError::TooLong);
        }
        let staff = StaffId::new(c.sub).map_err(|_| TokenError::Invalid)?;
        Ok(Verified {
            staff,
            valid_until: c.exp + self.leeway,
        })
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
        "ms" => return Ok(Duration::from_millis(n)),
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
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef", MAX_TOKEN_TTL);
        let alice = StaffId::new("alice").unwrap();
        let token = keys.mint(&alice, Duration::from_secs(60));
        assert_eq!(keys.verify(&token).unwrap().staff, alice);
        let other = Keys::new(b"another secret another secret 12", MAX_TOKEN_TTL);
        assert!(matches!(other.verify(&token), Err(TokenError::Invalid)));
        assert!(matches!(keys.verify("not.a.token"), Err(TokenError::Invalid)));
        assert_eq!(format!("{keys:?}"), "Keys(<secret>)");
    }

    #[test]
    fn not_yet_valid_and_too_long_lived_tokens_are_refused() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(3600));
        let now = now_secs();
        let claims = |iat: u64, exp: u64, nbf: Option<u64>| Claims {
            sub: "alice".into(),
            aud: AUDIENCE.into(),
            iat,
            exp,
            nbf,
        };
        let early = keys.sign(&claims(now, now + 600, Some(now + 300)));
        assert!(
            matches!(keys.verify(&early), Err(TokenError::Invalid)),
            "nbf in the future"
        );
        let ready = keys.sign(&claims(now, now + 600, Some(now)));
        assert!(keys.verify(&ready).is_ok());
        let long = keys.sign(&claims(now, now + 7200, None));
        assert!(matches!(keys.verify(&long), Err(TokenError::TooLong)));
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("8x").is_err());
    }
}
