//! The real relay router served in-process on a loopback port, on a runtime
//! of its own, so blocking clients (the CLI's `troth-client`) can talk to it
//! from ordinary test threads. `wrap` may put layers in front of it.

use std::net::SocketAddr;

use axum::Router;
use troth_relay::AppState;

/// A relay serving on `127.0.0.1`, stopped when dropped.
pub struct InProcessRelay {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessRelay {
    /// Serves `wrap(troth_relay::app(state))`.
    pub fn start(state: AppState, wrap: impl FnOnce(Router) -> Router + Send + 'static) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = wrap(troth_relay::app(state));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).ok();
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
                .ok();
            });
        });
        let addr = addr_rx.recv().expect("relay address");
        InProcessRelay {
            url: format!("http://{addr}"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcessRelay {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
