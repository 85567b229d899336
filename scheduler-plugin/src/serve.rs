//! Serving the router over plain HTTP, TLS or mutual TLS (client certificates verified
//! against a configured CA), with certificate files re-read when they change, and graceful
//! shutdown: on the shutdown signal the listener closes, in-flight requests finish (up to a
//! grace period), idle connections close.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get after the shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

/// Modification time and length of each TLS file (`None`: unreadable).
type Stamp = Vec<Option<(std::time::SystemTime, u64)>>;

/// Where the serving certificate, its key and (for mutual TLS) the CA that client
/// certificates must chain to are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundle (PEM) client certificates are verified against; `None`: no client
    /// authentication.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    /// Modification time and length of every file: what a rotation changes.
    fn stamp(&self) -> Stamp {
        self.paths()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

/// A TLS acceptor from `files`: the certificate chain and key, and with `client_ca` a
/// verifier that refuses any client certificate not chaining to it (kube-scheduler's
/// extender `tlsConfig.certFile`/`keyFile`). A client without a certificate completes the
/// handshake; [`serve`] then answers it from the public routes only (probes, metrics), never
/// the verbs.
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let (cert, key) = (&files.cert, &files.key);
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in the file",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("TLS client CA {}: {e}", ca.display()))?;
            let (added, _) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(format!(
                    "TLS client CA {}: no usable CA certificate in the file",
                    ca.display()
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("TLS client CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS whose files are re-read when they change (certificate rotation without a restart):
/// [`ReloadingTls::reload_if_changed`] builds a new acceptor when a file's modification time
/// or size moved; new connections use it, open ones keep theirs. A rotation caught half-way
/// (a key that does not match the certificate yet) keeps the old acceptor and is tried again
/// at the next check.
#[derive(Clone)]
pub struct ReloadingTls {
    files: TlsFiles,
    current: Arc<RwLock<(TlsAcceptor, Stamp)>>,
}

impl ReloadingTls {
    /// Loads `files` now; an error names the file at fault.
    pub fn new(files: TlsFiles) -> Result<Self, String> {
        let stamp = files.stamp();
        let acceptor = tls_acceptor(&files)?;
        Ok(Self {
            files,
            current: Arc::new(RwLock::new((acceptor, stamp))),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// Rebuilds the acceptor if a file changed since the last load. `Ok(true)`: reloaded.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let stamp = self.files.stamp();
        let same = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            == stamp;
        if same {
            return Ok(false);
        }
        let acceptor = tls_acceptor(&self.files)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (acceptor, stamp);
        Ok(true)
    }

    /// Checks the files every `every` until dropped (spawned by the binary).
    pub async fn watch(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None;
        loop {
            tick.tick().await;
            match self.reload_if_changed() {
                Ok(true) => {
                    last_error = None;
                    tracing::info!("TLS files changed: reloaded");
                }
                Ok(false) => {}
                Err(e) => {
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!(
                            error = %e,
                            "TLS files changed but cannot be used yet (keeping the previous ones)"
                        );
                    }
                    last_error = Some(e);
                }
            }
        }
    }
}

/// Serves `app` on `listener` (TLS when `tls` is given) until `shutdown` completes, then
/// drains connections for up to ten seconds. Under mutual TLS, a client without a certificate
/// is refused every path (403); see [`serve_with_public`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<ReloadingTls>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with_public(listener, app, Router::new(), tls, shutdown).await;
}

/// The answer to a path a client without a certificate may not call.
async fn certificate_required() -> (axum::http::StatusCode, &'static str) {
    (
        axum::http::StatusCode::FORBIDDEN,
        "a client certificate is required for this path\n",
    )
}

/// [`serve`], where under mutual TLS a client that presents no certificate (the kubelet's
/// probes, Prometheus) is answered from `public` alone, every other path 403; a client whose
/// certificate chains to the CA gets `app`. A certificate that does not chain is refused at
/// the handshake. Without a client CA every client gets `app`.
pub async fn serve_with_public(
    listener: TcpListener,
    app: Router,
    public: Router,
    tls: Option<ReloadingTls>,
    shutdown: impl Future<Output = ()>,
) {
    let public = public.fallback(certificate_required);
    let mutual = tls.as_ref().is_some_and(|t| t.files.client_ca.is_some());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait and go on.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, public) = (app.clone(), public.clone());
        let watcher = graceful.watcher();
        let tls = tls.as_ref().map(ReloadingTls::acceptor);
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let service = TowerToHyperService::new(app);
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    // The verifier checked any certificate presented; none means public only.
                    let authenticated = !mutual || stream.get_ref().1.peer_certificates().is_some();
                    let service =
                        TowerToHyperService::new(if authenticated { app } else { public });
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(GRACE) => {}
    }
}
