use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tiktok_poster::tiktok::{Disposition, ErrorKind, Pkce};

use crate::support::{REDIRECT, TestSim, auth_request, param};

/// The authorize page redirects with code, state and scopes; the code buys TikTok-shaped tokens.
#[tokio::test]
async fn authorize_then_exchange_gives_tiktok_shaped_tokens() {
    let t = TestSim::spawn(|_| {}).await;
    let q = t.authorize(&auth_request("alice", false)).await;
    assert_eq!(param(&q, "state").as_deref(), Some("st-123"));
    assert_eq!(
        param(&q, "scopes").as_deref(),
        Some("user.info.basic,video.list,video.upload,video.publish")
    );
    let code = param(&q, "code").unwrap();
    let tokens = t.client.exchange_code(&code, REDIRECT, None).await.unwrap();
    assert!(tokens.access_token.expose_secret().starts_with("act."));
    assert!(tokens.refresh_token.expose_secret().starts_with("rft."));
    assert_eq!(tokens.expires_in, Duration::from_secs(86_400));
    assert_eq!(tokens.scopes.len(), 4);
    assert!(!tokens.open_id.is_empty());
}

/// A code works once; the second exchange is refused with invalid_grant, and when TikTok sends that
/// inside an HTTP 200 the client still sees a failure.
#[tokio::test]
async fn a_used_code_is_refused_even_when_the_error_comes_with_http_200() {
    let t = TestSim::spawn(|c| c.oauth_error_status = 200).await;
    let q = t.authorize(&auth_request("bob", false)).await;
    let code = param(&q, "code").unwrap();
    t.client.exchange_code(&code, REDIRECT, None).await.unwrap();
    let err = t
        .client
        .exchange_code(&code, REDIRECT, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::OAuth);
    assert_eq!(err.code, "invalid_grant");
    assert_eq!(err.http_status, Some(200));
    assert_eq!(err.disposition(), Disposition::Fail);
    assert!(err.log_id.is_some(), "the simulator sends a log_id: {err}");
}

/// The redirect_uri at exchange must be the one used at authorize.
#[tokio::test]
async fn a_mismatched_redirect_uri_is_refused() {
    let t = TestSim::spawn(|_| {}).await;
    let q = t.authorize(&auth_request("carol", false)).await;
    let err = t
        .client
        .exchange_code(
            &param(&q, "code").unwrap(),
            "http://127.0.0.1:2/other",
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_request");
    assert!(err.message.contains("Redirect_uri"), "{err}");
}

/// Refresh rotates the refresh token: the new one works, the old one stops working.
#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_stops_working() {
    let t = TestSim::spawn(|_| {}).await;
    let first = t.connect("dave", false).await;
    let second = t.client.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(
        second.refresh_token.expose_secret(),
        first.refresh_token.expose_secret()
    );
    assert_ne!(
        second.access_token.expose_secret(),
        first.access_token.expose_secret()
    );
    assert_eq!(second.open_id, first.open_id);
    // The new access token works.
    t.client.creator_info(&second.access_token).await.unwrap();
    let err = t.client.refresh(&first.refresh_token).await.unwrap_err();
    assert_eq!(err.code, "invalid_grant");
    assert_eq!(err.disposition(), Disposition::Fail);
    let third = t.client.refresh(&second.refresh_token).await.unwrap();
    assert!(
        third.refresh_expires_in <= second.refresh_expires_in,
        "a refresh does not extend the yearly limit"
    );
    assert_eq!(t.stats().await["refreshes"], 2);
}

/// Desktop apps use PKCE with TikTok's hex challenge; the wrong verifier is refused.
#[tokio::test]
async fn pkce_with_the_hex_challenge_works_and_a_wrong_verifier_is_refused() {
    let t = TestSim::spawn(|_| {}).await;
    let pkce = Pkce::generate();
    let mut req = auth_request("erin", true);
    req.pkce_challenge = Some(pkce.challenge.clone());
    let url = t.client.authorize_url(&req);
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        param(&query, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        param(&query, "scope").as_deref(),
        Some("user.info.basic,video.list,video.upload,video.publish")
    );

    let code = param(&t.authorize(&req).await, "code").unwrap();
    let wrong = SecretString::from("x".repeat(64));
    let err = t
        .client
        .exchange_code(&code, REDIRECT, Some(&wrong))
        .await
        .unwrap_err();
    assert!(err.message.contains("Code verifier"), "{err}");

    let code = param(&t.authorize(&req).await, "code").unwrap();
    t.client
        .exchange_code(&code, REDIRECT, Some(&pkce.verifier))
        .await
        .unwrap();
}

/// A base64url (RFC 7636) challenge is not what TikTok expects, and the simulator refuses it.
#[tokio::test]
async fn a_base64url_challenge_is_refused_at_authorize() {
    let t = TestSim::spawn(|_| {}).await;
    let mut req = auth_request("frank", false);
    req.pkce_challenge = Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into());
    let q = t.authorize(&req).await;
    assert_eq!(param(&q, "error").as_deref(), Some("invalid_request"));
    assert!(param(&q, "code").is_none());
}

/// A user who declines comes back with error and error_description, and no code.
#[tokio::test]
async fn a_declined_authorization_returns_error_on_the_callback() {
    let t = TestSim::spawn(|_| {}).await;
    let mut req = auth_request("gina", false);
    req.extra.push(("sim_deny".into(), "1".into()));
    let q = t.authorize(&req).await;
    assert_eq!(param(&q, "error").as_deref(), Some("access_denied"));
    assert!(param(&q, "error_description").is_some());
}

/// Revoking ends the grant: the access token and the refresh token stop working.
#[tokio::test]
async fn revoke_ends_the_grant() {
    let t = TestSim::spawn(|_| {}).await;
    let tokens = t.connect("hank", false).await;
    t.client.revoke(&tokens.access_token).await.unwrap();
    let err = t
        .client
        .creator_info(&tokens.access_token)
        .await
        .unwrap_err();
    assert_eq!(err.code, "access_token_invalid");
    assert_eq!(err.disposition(), Disposition::RefreshToken);
    assert_eq!(
        t.client
            .refresh(&tokens.refresh_token)
            .await
            .unwrap_err()
            .code,
        "invalid_grant"
    );
    assert_eq!(
        t.client
            .revoke(&tokens.access_token)
            .await
            .unwrap_err()
            .code,
        "invalid_request"
    );
}

/// An expired access token is refused with access_token_invalid (refresh, then retry) and counted.
#[tokio::test]
async fn an_expired_access_token_asks_for_a_refresh() {
    let t = TestSim::spawn(|c| c.token_ttl_secs = 1).await;
    let tokens = t.connect("ivy", false).await;
    let issued = std::time::Instant::now();
    assert_eq!(tokens.expires_in, Duration::from_secs(1));
    t.client.creator_info(&tokens.access_token).await.unwrap();
    // Only the clock can expire a token; wait for it without spending the rate limit.
    crate::support::wait_until(
        Duration::from_secs(5),
        "the token's second to pass",
        || async { (issued.elapsed() > Duration::from_millis(1100)).then_some(()) },
    )
    .await;
    let err = t
        .client
        .creator_info(&tokens.access_token)
        .await
        .unwrap_err();
    assert_eq!(err.code, "access_token_invalid");
    assert_eq!(err.disposition(), Disposition::RefreshToken);
    assert_eq!(t.stats().await["expired_token_calls"], 1);
    let fresh = t.client.refresh(&tokens.refresh_token).await.unwrap();
    t.client.creator_info(&fresh.access_token).await.unwrap();
}

/// A wrong client secret is invalid_client when the simulator is told the real one.
#[tokio::test]
async fn a_wrong_client_secret_is_invalid_client() {
    let t = TestSim::spawn(|c| c.client_secret = Some("the-real-secret".into())).await;
    let q = t.authorize(&auth_request("jay", false)).await;
    let err = t
        .client
        .exchange_code(&param(&q, "code").unwrap(), REDIRECT, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_client");
    assert!(
        !err.to_string().contains("test-secret"),
        "the secret never appears in an error: {err}"
    );
}

/// A token-endpoint outage is retryable.
#[tokio::test]
async fn a_token_endpoint_outage_is_retryable() {
    let t = TestSim::spawn(|_| {}).await;
    let tokens = t.connect("kim", false).await;
    t.fault(serde_json::json!({"endpoint": "token", "error": "temporarily_unavailable"}))
        .await;
    let err = t.client.refresh(&tokens.refresh_token).await.unwrap_err();
    assert_eq!(err.code, "temporarily_unavailable");
    assert_eq!(err.disposition(), Disposition::Retry);
    // The refresh token was not consumed by the failed call.
    t.client.refresh(&tokens.refresh_token).await.unwrap();
}
