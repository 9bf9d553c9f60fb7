//! TikTok's OAuth v2 endpoints: the authorize page, the token endpoint (code exchange and refresh) and
//! revoke.
//!
//! As strict as TikTok: codes are single-use and expire, the redirect URI must match the one the code
//! was issued for, a PKCE challenge must be S256 over the verifier, refresh tokens rotate (the old one
//! stops working at once) and keep the expiry of their first issue, and revoking ends every token of
//! the user. Error bodies use OAuth's `error`/`error_description` envelope, at the configured status
//! (TikTok has been seen answering 200 with an error body). The `sim_*` query parameters of
//! `authorize` stand in for the user's choices on TikTok's consent page (`sim_deny_scopes` unticks
//! some of the asked scopes).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{finish, oauth_error, prelude};
use crate::sim::state::random_token;
use crate::sim::{ConnKill, Sim};

pub(super) async fn authorize(
    State(sim): State<Sim>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut st = sim.lock();
    st.count_request("authorize");
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let redirect_uri = get("redirect_uri");
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        st.count_error("invalid_request");
        return (
            StatusCode::BAD_REQUEST,
            Html(
                "<h1>Invalid request</h1><p>redirect_uri is missing or is not an absolute URL.</p>",
            ),
        )
            .into_response();
    };
    if get("client_key").is_empty()
        || sim
            .cfg
            .client_key
            .as_deref()
            .is_some_and(|k| k != get("client_key"))
    {
        st.count_error("invalid_client");
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>Invalid request</h1><p>client_key is missing or unknown.</p>"),
        )
            .into_response();
    }
    let fail = |target: &mut url::Url, code: &str, desc: &str| {
        target
            .query_pairs_mut()
            .append_pair("error", code)
            .append_pair("error_description", desc)
            .append_pair("state", get("state"));
        Redirect::to(target.as_str()).into_response()
    };
    if get("response_type") != "code" {
        st.count_error("unsupported_response_type");
        return fail(
            &mut target,
            "unsupported_response_type",
            "response_type must be code",
        );
    }
    // The user may untick scopes on the consent page (`sim_deny_scopes`, comma-separated): the
    // grant is what the app asked for less what the user refused.
    let denied: Vec<&str> = get("sim_deny_scopes").split(',').map(str::trim).collect();
    let scopes: Vec<String> = get("scope")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !denied.contains(s))
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        st.count_error("invalid_scope");
        return fail(
            &mut target,
            "invalid_scope",
            "scope is required (comma-separated)",
        );
    }
    let challenge = q.get("code_challenge").cloned();
    if let Some(c) = &challenge {
        let hex64 = c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit());
        if get("code_challenge_method") != "S256" || !hex64 {
            st.count_error("invalid_request");
            return fail(
                &mut target,
                "invalid_request",
                "Code verifier or code challenge is invalid.",
            );
        }
    }
    if get("sim_deny") == "1" || get("sim_deny") == "true" {
        st.count_error("access_denied");
        return fail(
            &mut target,
            "access_denied",
            "The user denied the authorization request.",
        );
    }
    let username = match get("sim_username") {
        "" => "sim_creator".to_string(),
        u => u.to_string(),
    };
    let private = get("sim_private") == "1" || get("sim_private") == "true";
    let creator = st.creator_mut(&username, private);
    if let Ok(secs) = get("sim_max_duration").parse() {
        creator.max_duration_sec = secs;
    }
    let open_id = creator.open_id.clone();
    let code = random_token(40);
    st.codes.insert(
        code.clone(),
        crate::sim::state::AuthCode {
            open_id,
            scopes: scopes.clone(),
            redirect_uri: redirect_uri.to_string(),
            challenge,
            expires_at: Instant::now() + Duration::from_secs(sim.cfg.code_ttl_secs),
            used: false,
        },
    );
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("scopes", &scopes.join(","))
        .append_pair("state", get("state"));
    Redirect::to(target.as_str()).into_response()
}

fn parse_form(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return None;
    }
    Some(url::form_urlencoded::parse(body).into_owned().collect())
}

pub(super) async fn token(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match prelude(&sim, "token", &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = token_inner(&sim, &headers, &body);
    finish(&fault, &conn, resp).await
}

fn token_inner(sim: &Sim, headers: &HeaderMap, body: &[u8]) -> Response {
    let es = sim.cfg.oauth_error_status;
    let mut st = sim.lock();
    let Some(form) = parse_form(headers, body) else {
        return oauth_error(
            &mut st,
            es,
            "invalid_request",
            "The request parameters are malformed.",
        );
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let key_ok = !get("client_key").is_empty()
        && sim
            .cfg
            .client_key
            .as_deref()
            .is_none_or(|k| k == get("client_key"));
    let secret_ok = !get("client_secret").is_empty()
        && sim
            .cfg
            .client_secret
            .as_deref()
            .is_none_or(|s| s == get("client_secret"));
    if !key_ok || !secret_ok {
        return oauth_error(
            &mut st,
            es,
            "invalid_client",
            "Client key or secret is incorrect.",
        );
    }
    let access_ttl = Duration::from_secs(sim.cfg.token_ttl_secs);
    let refresh_ttl = Duration::from_secs(sim.cfg.refresh_ttl_secs);
    let now = Instant::now();
    let (open_id, scopes, refresh_expires_at) = match get("grant_type") {
        "authorization_code" => {
            let Some(code) = st.codes.get_mut(get("code")) else {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Authorization code is invalid.",
                );
            };
            if code.used {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Authorization code has been used.",
                );
            }
            if code.expires_at <= now {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Authorization code is expired.",
                );
            }
            if code.redirect_uri != get("redirect_uri") {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_request",
                    "Redirect_uri is not matched with the uri when requesting code.",
                );
            }
            if let Some(challenge) = code.challenge.clone() {
                let verifier = get("code_verifier");
                if verifier.is_empty()
                    || hex::encode(Sha256::digest(verifier.as_bytes())) != challenge
                {
                    return oauth_error(
                        &mut st,
                        es,
                        "invalid_request",
                        "Code verifier or code challenge is invalid.",
                    );
                }
            }
            code.used = true;
            (code.open_id.clone(), code.scopes.clone(), None)
        }
        "refresh_token" => {
            let Some(rt) = st.refresh.get(get("refresh_token")).cloned() else {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Refresh token is invalid or expired.",
                );
            };
            if rt.expires_at <= now {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Refresh token is invalid or expired.",
                );
            }
            // Rotation: the old refresh token stops working at once.
            st.refresh.remove(get("refresh_token"));
            st.stats.refreshes += 1;
            // A refresh does not extend the refresh token's life ("365 days after the initial issuance").
            (rt.open_id, rt.scopes, Some(rt.expires_at))
        }
        "" => return oauth_error(&mut st, es, "invalid_request", "grant_type is required."),
        _ => {
            return oauth_error(
                &mut st,
                es,
                "unsupported_grant_type",
                "The grant type is not supported.",
            );
        }
    };
    let (access, refresh, refresh_expiry) = st.issue_tokens(
        &open_id,
        &scopes,
        access_ttl,
        refresh_ttl,
        refresh_expires_at,
    );
    let body = json!({
        "access_token": access,
        "expires_in": access_ttl.as_secs(),
        "open_id": open_id,
        "refresh_expires_in": refresh_expiry.saturating_duration_since(now).as_secs(),
        "refresh_token": refresh,
        "scope": scopes.join(","),
        "token_type": "Bearer",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(super) async fn revoke(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match prelude(&sim, "revoke", &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = {
        let es = sim.cfg.oauth_error_status;
        let mut st = sim.lock();
        match parse_form(&headers, &body) {
            None => oauth_error(
                &mut st,
                es,
                "invalid_request",
                "The request parameters are malformed.",
            ),
            Some(form) => {
                let token = form.get("token").cloned().unwrap_or_default();
                match st.access.remove(&token) {
                    None => oauth_error(&mut st, es, "invalid_request", "The token is invalid."),
                    Some(t) => {
                        // Revoking ends the whole grant: every token of this user.
                        st.access.retain(|_, a| a.open_id != t.open_id);
                        st.refresh.retain(|_, r| r.open_id != t.open_id);
                        (StatusCode::OK, "").into_response()
                    }
                }
            }
        }
    };
    finish(&fault, &conn, resp).await
}
