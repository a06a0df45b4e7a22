//! Which hosts provider outputs may be downloaded from, and the redirect
//! policy that keeps every hop of a download on those hosts.

use std::{net::IpAddr, sync::Arc};

use reqwest::redirect;
use url::Url;

/// Hops a download may take before we give up on it.
const MAX_REDIRECTS: usize = 5;

/// The error a refused redirect carries through reqwest, so the adapter can
/// report it as [`super::ProviderError::Disallowed`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RedirectRefused(pub String);

/// The allow-list. Each rule pins a scheme, a host and a port:
/// `replicate.delivery` (or `.replicate.delivery`) allows
/// `https://replicate.delivery:443` and its subdomains; `http://host:8080`
/// that scheme and port; a rule without a scheme means https, one without
/// a port the scheme's default port. An IP address allows exactly itself.
#[derive(Debug, Clone)]
pub(crate) struct HostList(Vec<Rule>);

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    scheme: String,
    host: String,
    port: u16,
    subdomains: bool,
}

impl HostList {
    /// Parses configuration entries; blank entries are skipped, and an entry
    /// that is not a host name is an error naming it.
    pub(crate) fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(Rule::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Ok when `url` is http(s) on an allowed host; otherwise the reason.
    pub(crate) fn check(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not http(s)", url.scheme()));
        }
        let host = url
            .host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .ok_or_else(|| "URL has no host".to_owned())?;
        let port = url.port_or_known_default().ok_or_else(|| "URL has no port".to_owned())?;
        if self.0.iter().any(|rule| rule.allows(url.scheme(), &host, port)) {
            Ok(())
        } else {
            Err(format!("{}://{host}:{port} is not an allowed output host", url.scheme()))
        }
    }

    /// A redirect policy that follows at most a few hops, each to an
    /// allowed host; anything else fails the request with [`RedirectRefused`].
    pub(crate) fn redirect_policy(self: &Arc<Self>) -> redirect::Policy {
        let hosts = Arc::clone(self);
        redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match hosts.check(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(reason) => {
                    let reason = format!("redirect to {} refused: {reason}", attempt.url());
                    attempt.error(RedirectRefused(reason))
                }
            }
        })
    }
}

impl Rule {
    fn parse(entry: &str) -> Result<Self, String> {
        let bad = || format!("invalid output host entry {entry:?}");
        let entry = entry.to_ascii_lowercase();
        // An origin ("http://host:port/") or a bare host (https).
        let with_scheme = match entry.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.trim_start_matches('.')),
            None => format!("https://{}", entry.trim_start_matches('.')),
        };
        let url = Url::parse(&with_scheme).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad());
        }
        let host = url.host_str().ok_or_else(bad)?;
        let host = host.trim_end_matches('.').to_owned();
        if host.is_empty() || url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(bad());
        }
        let port = url.port_or_known_default().ok_or_else(bad)?;
        let is_ip = host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
        Ok(Self { scheme: url.scheme().to_owned(), port, subdomains: !is_ip, host })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host_ok = host == self.host
            || (self.subdomains && host.strip_suffix(self.host.as_str()).is_some_and(|prefix| prefix.ends_with('.')));
        scheme == self.scheme && host_ok && port == self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> HostList {
        let owned: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        HostList::parse(&owned).unwrap_or_else(|e| panic!("{e}"))
    }

    fn allowed(hosts: &HostList, url: &str) -> bool {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        hosts.check(&url).is_ok()
    }

    #[test]
    fn a_domain_allows_itself_and_its_subdomains_only() {
        for hosts in [list(&["replicate.delivery"]), list(&[".replicate.delivery"])] {
            assert!(allowed(&hosts, "https://replicate.delivery/a.png"));
            assert!(allowed(&hosts, "https://pbxt.replicate.delivery/a.png"));
            assert!(allowed(&hosts, "https://PBXT.Replicate.Delivery./a.png"));
            assert!(!allowed(&hosts, "https://evilreplicate.delivery/a.png"));
            assert!(!allowed(&hosts, "https://replicate.delivery.evil.com/a.png"));
            assert!(!allowed(&hosts, "ftp://replicate.delivery/a.png"));
            assert!(!allowed(&hosts, "file:///etc/passwd"));
        }
    }

    #[test]
    fn ports_and_ip_addresses_are_exact() {
        let hosts = list(&["http://127.0.0.1:3000", "http://[::1]", "https://files.example.com"]);
        assert!(allowed(&hosts, "http://127.0.0.1:3000/sim/files/x"));
        assert!(!allowed(&hosts, "http://127.0.0.1:3001/sim/files/x"));
        assert!(!allowed(&hosts, "http://127.0.0.10:3000/x"));
        assert!(allowed(&hosts, "http://[::1]/x"));
        assert!(!allowed(&hosts, "http://[::1]:8080/x"), "no port in the rule means the default one");
        assert!(allowed(&hosts, "https://cdn.files.example.com/x"));
        assert!(allowed(&hosts, "https://cdn.files.example.com:443/x"));
    }

    #[test]
    fn rules_pin_the_scheme_and_the_port() {
        let hosts = list(&["https://files.example.com", "replicate.delivery"]);
        assert!(!allowed(&hosts, "http://x.files.example.com:8080/a.png"));
        assert!(!allowed(&hosts, "http://files.example.com/a.png"), "https rule, http URL");
        assert!(!allowed(&hosts, "https://files.example.com:8443/a.png"));
        assert!(allowed(&hosts, "https://replicate.delivery/a.png"));
        assert!(!allowed(&hosts, "http://replicate.delivery/a.png"), "a bare host means https");
        assert!(!allowed(&hosts, "https://pbxt.replicate.delivery:444/a.png"));
        let plain = list(&["http://127.0.0.1:8080"]);
        assert!(!allowed(&plain, "https://127.0.0.1:8080/a.png"));
        assert!(HostList::parse(&["ftp://files.example.com".to_owned()]).is_err());
    }

    #[test]
    fn nonsense_entries_are_rejected_and_blank_ones_skipped() {
        assert!(HostList::parse(&["exa mple.com".to_owned()]).is_err());
        assert!(HostList::parse(&["example.com/path".to_owned()]).is_err());
        let empty = list(&["", "  "]);
        assert!(!allowed(&empty, "https://replicate.delivery/a.png"));
    }
}
