//! Calls to monitoring URLs: the heartbeat (an HTTP GET to healthchecks.io,
//! Uptime Kuma, Cronitor after each run in which every backup succeeded,
//! so silence is noticed), and the notifications of [`super::notify`].

use std::time::Duration;

use crate::progress::Cancel;

/// The longest a heartbeat may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// GETs `url`, or POSTs `body` (its content type, its bytes) to it;
/// returns the status code, or the reason it failed (the URL is not
/// repeated: it may hold a secret).
pub fn send(url: &str, body: Option<(&str, Vec<u8>)>, cancel: &Cancel) -> Result<u16, String> {
    if cancel.is_cancelled() {
        return Err("the service is stopping".into());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the HTTP client: {e}"))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let request = match body {
            None => client.get(url),
            Some((kind, bytes)) => client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, kind)
                .body(bytes),
        };
        let resp = request
            .send()
            .await
            .map_err(|e| format!("no answer: {}", e.without_url()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("the monitor answered {status}"))
        }
    })
}
