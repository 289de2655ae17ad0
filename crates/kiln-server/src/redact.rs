//! The one place credentials are taken out of what the server shows or logs:
//! repository URLs (`https://user:token@host/…`), outgoing targets (whose path
//! is often a token itself), and free text such as git's error output.

/// A URL split as `scheme`, its host (the authority without any `user:password@`) and what
/// follows the host (path, query, fragment); `None` for text that is no URL.
fn url_parts(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    Some((scheme, host, after))
}

/// A URL without any `user:password@` in it; other text is returned as is.
pub fn without_credentials(url: &str) -> String {
    match url_parts(url) {
        Some((scheme, host, after)) => format!("{scheme}://{host}{after}"),
        None => url.to_string(),
    }
}

/// Only the scheme and host of a URL, with `/…` when it had more (a webhook's
/// path or query may be its secret).
pub fn origin_only(url: &str) -> String {
    match url_parts(url) {
        Some((scheme, host, after)) => format!("{scheme}://{host}{}", if after.len() > 1 { "/…" } else { "" }),
        None => url.to_string(),
    }
}

/// A notification target as the API shows it: a webhook URL keeps only its scheme and host
/// (chat webhook URLs carry their secret in the path); other targets (email) as they are.
pub fn shown_target(kind: &str, target: &str) -> String {
    match kind {
        "webhook" | "chat" => origin_only(target),
        _ => target.to_string(),
    }
}

/// Free text with the credentials of every URL in it removed (`scheme://user:pw@host`
/// becomes `scheme://host`).
pub fn in_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after.find(|c: char| c.is_whitespace() || "/?#'\"<>`".contains(c)).unwrap_or(after.len());
        let authority = &after[..end];
        out.push_str(authority.rsplit('@').next().unwrap_or(authority));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Text with every one of `secrets` (non-empty) replaced by `***`.
pub fn secrets(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |t, s| t.replace(s, "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_everywhere_they_appear() {
        assert_eq!(without_credentials("https://bob:hunter2@git.example/org/a.git"), "https://git.example/org/a.git");
        assert_eq!(without_credentials("https://tok@git.example?x=1"), "https://git.example?x=1");
        assert_eq!(without_credentials("/srv/repos/a"), "/srv/repos/a");
        assert_eq!(origin_only("https://u:p@hooks.example/T0/B1/secret"), "https://hooks.example/…");
        assert_eq!(origin_only("https://hooks.example"), "https://hooks.example");
        let t = "failed to clone http://kilnbot:Sup3r@127.0.0.1:9/x.git: fatal: unable to access 'http://kilnbot:Sup3r@127.0.0.1:9/x.git/'";
        let r = in_text(t);
        assert!(!r.contains("Sup3r") && !r.contains("kilnbot"), "{r}");
        assert!(r.contains("http://127.0.0.1:9/x.git/'"), "{r}");
        assert_eq!(in_text("no url here"), "no url here");
        assert_eq!(secrets("a tok b tok", &["tok", ""]), "a *** b ***");
    }

    #[test]
    fn webhook_targets_hide_their_path_and_credentials() {
        assert_eq!(shown_target("chat", "slack+https://hooks.slack.com/services/T0/B0/XYZ"), "slack+https://hooks.slack.com/…");
        assert_eq!(shown_target("webhook", "https://u:p@ci.example.com"), "https://ci.example.com");
        assert_eq!(shown_target("email", "a@x,b@y"), "a@x,b@y");
    }
}
