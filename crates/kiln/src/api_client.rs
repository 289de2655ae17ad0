//! A thin client for the REST API, used by the client commands.

use anyhow::anyhow;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A CLI error that carries its exit code (2 unless said otherwise); the agent's command line
/// (shared with the lean `kiln-agent` binary) defines it.
pub use kiln_agent::cli::Exit;

pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> Api {
        kiln_agent::client::install_crypto();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client always builds");
        Api { http, base: base.trim_end_matches('/').to_string(), token: token.filter(|t| !t.is_empty()) }
    }

    pub async fn call<T: DeserializeOwned, B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> anyhow::Result<T> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }

    /// POST a multipart form (uploads), with a longer time limit.
    pub async fn post_multipart<T: DeserializeOwned>(&self, path: &str, form: reqwest::multipart::Form) -> anyhow::Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).multipart(form).timeout(std::time::Duration::from_secs(900))).await
    }

    /// Send with the token; a refusal becomes an `Exit(2, the server's message)`.
    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        self.send_hinting(req, " (set KILN_TOKEN or --token)").await
    }

    /// [`Self::send`], with what to say after a 401.
    async fn send_hinting<T: DeserializeOwned>(&self, mut req: reqwest::RequestBuilder, unauthorized: &str) -> anyhow::Result<T> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.send_as_is(req, unauthorized).await
    }

    /// Send `req` without adding the token; a refusal becomes an `Exit(2, the server's message)`.
    async fn send_as_is<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder, unauthorized: &str) -> anyhow::Result<T> {
        let resp = req.send().await.map_err(|e| Exit(2, format!("cannot reach the kiln server at {}: {e} (set --server or KILN_SERVER)", self.base)))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            let msg = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| text.trim().to_string());
            let hint = if status == StatusCode::UNAUTHORIZED { unauthorized } else { "" };
            return Err(Exit(2, format!("{msg}{hint}")).into());
        }
        serde_json::from_str(&text).map_err(|e| anyhow!("unexpected answer from the server: {e}"))
    }

    /// GET `path` into the file `dest`, streamed; returns the bytes written.
    pub async fn download(&self, path: &str, dest: &std::path::Path) -> anyhow::Result<u64> {
        use std::io::Write;
        let mut req = self.http.get(format!("{}{path}", self.base)).timeout(std::time::Duration::from_secs(3600));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.map_err(|e| Exit(2, format!("cannot reach the kiln server at {}: {e}", self.base)))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(Exit(2, format!("{path}: {status}: {}", text.trim())).into());
        }
        let mut f = std::fs::File::create(dest).map_err(|e| Exit(2, format!("cannot write {}: {e}", dest.display())))?;
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            f.write_all(&chunk)?;
            n += chunk.len() as u64;
        }
        Ok(n)
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call::<T, ()>(Method::DELETE, path, None).await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call::<T, ()>(Method::GET, path, None).await
    }

    /// A build with all its jobs: the server pages them (`jobs_total` says how many
    /// there are), so this asks for pages of 500 until it holds them all.
    pub async fn build(&self, id: i64) -> anyhow::Result<kiln_wire::api::Build> {
        const PAGE: usize = 500;
        let mut b: kiln_wire::api::Build = self.get(&format!("/api/v1/builds/{id}?jobs_limit={PAGE}")).await?;
        while (b.jobs.len() as u64) < b.jobs_total {
            let next: kiln_wire::api::Build = self.get(&format!("/api/v1/builds/{id}?jobs_limit={PAGE}&jobs_offset={}", b.jobs.len())).await?;
            if next.jobs.is_empty() {
                break;
            }
            b.jobs.extend(next.jobs);
        }
        Ok(b)
    }

    /// Wake-ups from the event stream `path` for the kinds given (`wakeups.rs`); `None` when
    /// it cannot be opened.
    pub async fn wakeups(&self, path: &str, kinds: &'static [&'static str]) -> Option<tokio::sync::mpsc::Receiver<()>> {
        crate::wakeups::open(&self.http, format!("{}{path}", self.base), self.token.as_deref(), kinds).await
    }

    /// POST `body` (JSON bytes, as they are: a signature covers them) with extra headers, to a
    /// webhook (a 401 is a wrong or missing secret, not a token).
    pub async fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>, headers: &[(&str, String)]) -> anyhow::Result<T> {
        let mut req = self.http.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        // The signature is the credential: the caller's token (if any) stays home.
        self.send_as_is(req, " (check the project's --webhook-secret)").await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch<T: DeserializeOwned, B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.call(Method::PATCH, path, Some(body)).await
    }
}

/// Percent-encode a path segment.
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
