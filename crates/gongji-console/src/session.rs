//! Sign-in sessions and the anti-forgery tokens of their forms.
//!
//! A session is a random id in an `HttpOnly; SameSite=Strict` cookie that expires, mapped in
//! memory to the hash of the token it was opened with (never the token) and the session's
//! anti-forgery token. The actor is looked up from the token hash on every request, so a token
//! revoked through the API ends its console sessions at once. Sessions do not survive a
//! restart: signing in again is the recovery.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};

/// How long a session lasts from sign-in.
pub const SESSION_SECONDS_MAX: u64 = 8 * 3600;
/// Sessions held at most; beyond it the oldest expired ones go, then sign-in is refused.
pub const SESSION_COUNT_MAX: usize = 10_000;

pub const SESSION_COOKIE: &str = "gj_session";
/// The sign-in form's own anti-forgery cookie (there is no session yet to bind it to).
pub const LOGIN_COOKIE: &str = "gj_login";
pub const LANG_COOKIE: &str = "gj_lang";

#[derive(Clone, Debug)]
pub struct Session {
    pub token_hash: [u8; 32],
    pub csrf: String,
    pub expires: Instant,
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS randomness");
    hex::encode(bytes)
}

/// Constant-time equality for secrets compared with what a client sent.
pub fn secret_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// Opens a session; `None` when the table is full of live sessions.
    pub fn open(&self, token_hash: [u8; 32]) -> Option<(String, Session)> {
        let mut map = self.map.lock().expect("sessions lock");
        if map.len() >= SESSION_COUNT_MAX {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
            if map.len() >= SESSION_COUNT_MAX {
                return None;
            }
        }
        let id = random_hex();
        let session = Session {
            token_hash,
            csrf: random_hex(),
            expires: Instant::now() + Duration::from_secs(SESSION_SECONDS_MAX),
        };
        map.insert(id.clone(), session.clone());
        Some((id, session))
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().expect("sessions lock");
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for the console's cookies: path `/ui`, HttpOnly, SameSite=Strict.
/// Not `Secure`: the platform serves plain HTTP on its intranet; behind a TLS terminator the
/// cookie still only travels within `/ui`.
pub fn set_cookie(name: &str, value: &str, max_age_seconds: u64) -> String {
    format!("{name}={value}; Path=/ui; Max-Age={max_age_seconds}; HttpOnly; SameSite=Strict")
}
