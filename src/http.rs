//! The product's one HTTP client: [`ureq`] over rustls with the *ring* provider, for
//! the index sink (synchronous, inside the `normalize` pipeline) and for the collector
//! (async, each request run on Tokio's blocking pool; Sophos allows 10 requests a
//! second per credential, so a thread per request in flight costs nothing).

use std::path::Path;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// An agent whose TLS trusts the certificates of `ca_file` (PEM), or else the
/// platform's roots (falling back to the bundled Mozilla roots when the platform has
/// none), with `connect` on connecting (TCP and TLS) and `timeout` on each whole
/// request, and HTTP error statuses returned as answers rather than errors.
pub fn agent(
    ca_file: Option<&Path>,
    connect: Duration,
    timeout: Duration,
) -> Result<ureq::Agent, String> {
    let roots = match ca_file {
        Some(ca) => {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!("{}: no PEM certificate", ca.display()));
            }
            RootCerts::new_with_certs(&certs)
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let certs: Vec<Certificate<'static>> = native
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            if certs.is_empty() {
                RootCerts::WebPki
            } else {
                RootCerts::new_with_certs(&certs)
            }
        }
    };
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect.min(timeout)))
        .timeout_global(Some(timeout))
        .user_agent(concat!("sophos-tac/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .into())
}
