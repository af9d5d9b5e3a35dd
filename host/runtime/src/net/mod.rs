//! Tasks on several processes: a coordinator ([`Cluster`], in `weir
//! session`) places each job's slots on its own process and on task
//! managers ([`run_worker`](crate::run_worker), `weir worker --join`), which run the tasks it
//! deploys to them and report their events back.
//!
//! Everything between the processes is HTTP/2 on the cluster port (Flink's
//! RPC and data ports in one): JSON for control (registration, heartbeats,
//! deployments, task controls and events), and one stream per channel for
//! data (see [`data`]). Every request carries the cluster's secret, when it
//! has one.

pub(crate) mod cluster;
pub(crate) mod codec;
pub(crate) mod data;
pub mod measure;
pub(crate) mod protocol;

pub use cluster::{Cluster, ClusterOptions, WorkerView};
pub use data::DataPlane;
pub use protocol::GuestLoader;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use std::time::Duration;

/// The header and secret cluster requests carry (`weir.cluster.secret`).
#[derive(Clone, Default)]
pub struct Auth(Option<String>);

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Auth(******)"
        } else {
            "Auth(none)"
        })
    }
}

impl Auth {
    /// Requests carry `secret`, and only requests carrying it are served;
    /// with none, the cluster port is open to whoever reaches it.
    pub fn new(secret: Option<String>) -> Auth {
        Auth(secret.filter(|s| !s.is_empty()))
    }

    pub(crate) fn apply(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.0 {
            Some(s) => r.bearer_auth(s),
            None => r,
        }
    }

    fn admits(&self, header: Option<&str>) -> bool {
        let Some(secret) = &self.0 else {
            return true;
        };
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        // Compared in time independent of where they differ.
        given.len() == secret.len()
            && given
                .bytes()
                .zip(secret.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Refuses cluster requests without the cluster's secret.
async fn check_auth(auth: Auth, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if !auth.admits(header) {
        return (
            StatusCode::UNAUTHORIZED,
            "this is a Weir cluster port: requests need the cluster's secret \
             (weir.cluster.secret)",
        )
            .into_response();
    }
    next.run(request).await
}

/// The runtime that serves the cluster port and drives its streams.
/// The URLs of a comma-separated list (`--join a,b`, `--cluster a,b`),
/// trimmed, without trailing slashes or empty entries.
pub fn url_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

pub(crate) fn net_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-net")
            .enable_all()
            .build()
            .expect("starting the network runtime")
    })
}

/// Largest control request (a deployment with its restore plan, a batch
/// of checkpoint acknowledgements).
pub(crate) const MAX_REQUEST: usize = 256 << 20;

/// Per-stream window: a channel's credit, in bytes.
const STREAM_WINDOW: u32 = 256 * 1024;
/// Per-connection window: room for many channels to hold their credit
/// at once, so that stalled streams never use up the connection's.
const CONNECTION_WINDOW: u32 = 256 * STREAM_WINDOW;

/// Largest HTTP/2 frame: a batch in few frames rather than many 16 KiB
/// ones.
const MAX_FRAME: u32 = 256 * 1024;

pub(crate) fn client() -> reqwest::Client {
    weir_checkpoint::storage::install_crypto();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .http2_max_frame_size(MAX_FRAME)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .expect("building the cluster client")
}

/// Serves `router` (behind the secret) on `listener`, over HTTP/2 with
/// the windows above (and HTTP/1.1 for plain clients).
pub(crate) fn serve(listener: std::net::TcpListener, router: Router, auth: Auth) {
    let router = router.layer(axum::middleware::from_fn(move |r, n| {
        check_auth(auth.clone(), r, n)
    }));
    net_runtime().spawn(async move {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = socket.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let mut builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                builder
                    .http2()
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .max_frame_size(MAX_FRAME)
                    .keep_alive_interval(Some(Duration::from_secs(5)))
                    .keep_alive_timeout(Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new());
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                    .await;
            });
        }
    });
}

/// Whether a bind address reaches this host only.
pub fn is_loopback(address: &str) -> bool {
    let host = address.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Binds the cluster port.
pub fn bind(address: &str) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(address)
}

/// The URL peers reach a listener at: `advertised`, or the bound address
/// (with `0.0.0.0` read as this host's loopback).
pub fn advertised_url(listener: &std::net::TcpListener, advertised: Option<&str>) -> String {
    if let Some(a) = advertised.filter(|a| !a.is_empty()) {
        return if a.contains("://") {
            a.trim_end_matches('/').to_owned()
        } else {
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            if a.contains(':') {
                format!("http://{a}")
            } else {
                format!("http://{a}:{port}")
            }
        };
    }
    match listener.local_addr() {
        Ok(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        Ok(a) => format!("http://{a}"),
        Err(_) => "http://127.0.0.1:0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::Auth;

    #[test]
    fn the_secret_is_checked_whole() {
        let a = Auth::new(Some("s3cret".into()));
        assert!(a.admits(Some("Bearer s3cret")));
        assert!(!a.admits(Some("Bearer s3cre")));
        assert!(!a.admits(Some("Bearer s3cretX")));
        assert!(!a.admits(Some("s3cret")));
        assert!(!a.admits(None));
        assert!(Auth::new(None).admits(None));
        assert!(Auth::new(Some(String::new())).admits(None));
        assert_eq!(format!("{a:?}"), "Auth(******)");
    }
}
