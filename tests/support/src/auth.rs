//! Authentication in tests: one JWT secret, a configuration that turns authentication on, and
//! tokens signed with it.

use taskstream::Config;

/// The JWT secret of the tests that turn authentication on (HS256 needs at least 32 bytes).
pub const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// `config` with authentication on, tokens signed with [`SECRET`].
pub fn with_auth(config: Config) -> Config {
    Config {
        jwt_secret: Some(taskstream::config::Secret(SECRET.as_bytes().to_vec())),
        ..config
    }
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A token signed with [`SECRET`] for `tasks` that expires `ttl` seconds from now (negative:
/// already expired).
pub fn token(tasks: &[&str], ttl: i64) -> String {
    sign(&serde_json::json!({ "tasks": tasks, "exp": now() + ttl }))
}

/// A token of any `claims` (even invalid ones), signed with [`SECRET`].
pub fn sign(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}
