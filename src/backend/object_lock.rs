//! S3 Object Lock on a repository's bucket (SPEC.md 11.2): its default
//! retention, read and set with the two signed requests OpenDAL does not
//! make (`GET` and `PUT /BUCKET?object-lock`). Every object written into
//! such a bucket is then kept, version by version, until its retention
//! ends: no credential can delete or overwrite it before (COMPLIANCE), or
//! only one allowed to bypass governance can (GOVERNANCE).

use std::time::Duration;

use reqsign_aws_v4::{RequestSigner, StaticCredentialProvider};
use reqsign_core::{Context, Signer};

use crate::error::{BackendError, BackendErrorKind, BackendOp, Error, Result};

/// How strictly a retention holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    /// No credential can shorten it or delete a version before it ends.
    Compliance,
    /// Credentials allowed `s3:BypassGovernanceRetention` can.
    Governance,
}

impl RetentionMode {
    fn s3(self) -> &'static str {
        match self {
            RetentionMode::Compliance => "COMPLIANCE",
            RetentionMode::Governance => "GOVERNANCE",
        }
    }
}

impl std::str::FromStr for RetentionMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "compliance" => Ok(RetentionMode::Compliance),
            "governance" => Ok(RetentionMode::Governance),
            _ => Err(format!(
                "{s:?} is not a retention mode: give compliance or governance"
            )),
        }
    }
}

/// A bucket's default retention: every new object version is kept this
/// long after it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// How strictly.
    pub mode: RetentionMode,
    /// How long, in days (a rule in years counts 365 days a year).
    pub days: u32,
}

impl Retention {
    /// The retention as a duration.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.days) * 86_400)
    }
}

/// Where and as whom the bucket's configuration is read and written.
#[derive(Clone)]
pub struct BucketAdmin {
    /// `scheme://host[:port]`, no trailing slash.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Virtual-host style (`BUCKET.host`) rather than path style.
    pub virtual_host: bool,
    /// The signing region.
    pub region: String,
    /// The credentials.
    pub key: String,
    /// The secret (never printed).
    pub secret: String,
    /// A session token, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for BucketAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketAdmin")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl BucketAdmin {
    fn url(&self) -> String {
        if self.virtual_host {
            let (scheme, host) = self
                .endpoint
                .split_once("://")
                .unwrap_or(("https", self.endpoint.as_str()));
            format!("{scheme}://{}.{host}/?object-lock", self.bucket)
        } else {
            format!("{}/{}?object-lock", self.endpoint, self.bucket)
        }
    }

    fn object(&self) -> String {
        format!("the Object Lock configuration of bucket {}", self.bucket)
    }

    /// One signed request to `?object-lock`: the status and the body.
    async fn call(
        &self,
        client: &reqwest::Client,
        method: http::Method,
        body: Vec<u8>,
        op: BackendOp,
    ) -> Result<(u16, String)> {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(self.url())
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
        if !body.is_empty() {
            req = req
                .header("content-md5", content_md5(&body))
                .header("content-type", "application/xml");
        }
        let req = req
            .body(())
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", self.object())))?;
        let (mut parts, ()) = req.into_parts();
        let mut provider = StaticCredentialProvider::new(&self.key, &self.secret);
        if let Some(t) = &self.token {
            provider = provider.with_session_token(t);
        }
        let signer = Signer::new(
            Context::new(),
            provider,
            RequestSigner::new("s3", &self.region),
        );
        signer.sign(&mut parts, None).await.map_err(|e| {
            BackendError::new(
                BackendErrorKind::Permanent,
                op,
                self.object(),
                e.to_string(),
            )
        })?;
        let mut out = client.request(method, parts.uri.to_string());
        for (name, value) in &parts.headers {
            out = out.header(name, value);
        }
        let res = out.body(body).send().await.map_err(|e| {
            let kind = if e.is_timeout() || e.is_connect() {
                BackendErrorKind::Transient
            } else {
                BackendErrorKind::Permanent
            };
            BackendError::new(kind, op, self.object(), e.to_string())
        })?;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        Ok((status, text))
    }

    /// The bucket's default retention; `None` if it has no Object Lock or
    /// no default rule.
    pub async fn retention(&self, client: &reqwest::Client) -> Result<Option<Retention>> {
        let (status, body) = self
            .call(client, http::Method::GET, Vec::new(), BackendOp::Read)
            .await?;
        if status == 404 || body.contains("ObjectLockConfigurationNotFound") {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(self.refused(status, &body, BackendOp::Read));
        }
        if tag(&body, "ObjectLockEnabled") != Some("Enabled") {
            return Ok(None);
        }
        let Some(mode) = tag(&body, "Mode") else {
            return Ok(None);
        };
        let mode = mode.parse().map_err(|m: String| {
            BackendError::new(
                BackendErrorKind::Permanent,
                BackendOp::Read,
                self.object(),
                m,
            )
        })?;
        let days = match (tag(&body, "Days"), tag(&body, "Years")) {
            (Some(d), _) => d.parse::<u32>().ok(),
            (None, Some(y)) => y.parse::<u32>().ok().and_then(|y| y.checked_mul(365)),
            (None, None) => None,
        }
        .ok_or_else(|| {
            BackendError::new(
                BackendErrorKind::Permanent,
                BackendOp::Read,
                self.object(),
                "its default retention names no period",
            )
        })?;
        Ok(Some(Retention { mode, days }))
    }

    /// Sets the bucket's default retention (Object Lock must be enabled,
    /// which S3 allows only at the bucket's creation or on a versioned
    /// bucket).
    pub async fn set_retention(&self, client: &reqwest::Client, r: Retention) -> Result<()> {
        let body = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
             <Mode>{}</Mode><Days>{}</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
            r.mode.s3(),
            r.days
        );
        let (status, text) = self
            .call(
                client,
                http::Method::PUT,
                body.into_bytes(),
                BackendOp::Write,
            )
            .await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        if text.contains("InvalidBucketState") || text.contains("Object Lock") {
            return Err(self.not_enabled());
        }
        Err(self.refused(status, &text, BackendOp::Write))
    }

    fn not_enabled(&self) -> Error {
        BackendError::new(
            BackendErrorKind::Permanent,
            BackendOp::Read,
            self.object(),
            format!(
                "bucket {} has no Object Lock: S3 turns it on when a bucket is created (aws s3api create-bucket --object-lock-enabled-for-bucket); make a new bucket so",
                self.bucket
            ),
        )
        .into()
    }

    fn refused(&self, status: u16, body: &str, op: BackendOp) -> Error {
        let code = tag(body, "Code").unwrap_or("no error code");
        let kind = match status {
            401 | 403 => BackendErrorKind::PermissionDenied,
            500.. | 429 => BackendErrorKind::Transient,
            _ => BackendErrorKind::Permanent,
        };
        BackendError::new(kind, op, self.object(), format!("HTTP {status}, {code}")).into()
    }
}

/// The text of the first `<name>` element of an S3 XML answer.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find("</")? + start;
    Some(xml[start..end].trim())
}

/// The `Content-MD5` header S3 requires of a configuration it stores
/// (RFC 1864: the MD5 digest, base64).
fn content_md5(body: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_their_tags() {
        let xml = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Years>2</Years></DefaultRetention></Rule></ObjectLockConfiguration>";
        assert_eq!(tag(xml, "Mode"), Some("GOVERNANCE"));
        assert_eq!(tag(xml, "Years"), Some("2"));
        assert_eq!(tag(xml, "Days"), None);
        assert_eq!("Compliance".parse(), Ok(RetentionMode::Compliance));
        assert!("forever".parse::<RetentionMode>().is_err());
    }

    #[test]
    fn content_md5_is_rfc1864s() {
        // RFC 1321's test vectors, in base64 as RFC 1864 sends them.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(
            content_md5(b"The quick brown fox jumps over the lazy dog"),
            "nhB9nTcrtoJr2B01QqQZ1g=="
        );
    }
}
