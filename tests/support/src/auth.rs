//! Authentication in tests: one JWT secret, a configuration that turns authentication on, and
//! tokens signed with it.

use taskstream::Config;

/// The JWT secret of the tests that turn authentication on.
pub const SECRET: &str = "test-secret-that-is-long-enough";

/// `config` with authentication on, tokens signed with [`SECRET`].
pub fn with_auth(config: Config) -> Config {
    Config {
        jwt_secret: Some(taskstream::config::Secret(SECRET.to_owned())),
        ..config
    }
}

/// A token signed with [`SECRET`] for `tasks` that expires `ttl` seconds from now (negative:
/// already expired).
pub fn token(tasks: &[&str], ttl: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = serde_json::json!({ "tasks": tasks, "exp": now + ttl });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}
