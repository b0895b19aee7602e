//! The HTTP side: routes, access control, the event stream and `/metrics`.

use crate::metrics::Metrics;
use crate::model::{self, Deployment, Refusal};
use crate::store::{Filter, Storage};
use crate::tls;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::{broadcast, watch};

/// How `tsforge monitor` runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `sqlite:PATH` or `postgres://…`.
    pub database: String,
    pub runner_token: Option<String>,
    pub page_password: Option<String>,
    /// PEM certificate chain and key: HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Session cookie name and lifetime.
const COOKIE: &str = "tsforge_monitor_session";
const SESSION_SECONDS: u64 = 12 * 3600;

struct App {
    store: Arc<dyn Storage>,
    changes: broadcast::Sender<Deployment>,
    metrics: Metrics,
    token: Option<[u8; 32]>,
    password: Option<String>,
    session_key: [u8; 32],
    secure_cookie: bool,
    shutdown: watch::Receiver<bool>,
}

type Shared = Arc<App>;

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// A started monitor.
pub struct Running {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (5 s at most), closes event streams.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(r) => r?.context("serving HTTP")?,
            Err(_) => task.abort(),
        }
        Ok(())
    }

    /// Serves until the server fails.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?.context("serving HTTP")
    }
}

/// Opens the database (running its migrations), binds and serves in the background.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let store = crate::store::open(&config.database).await?;
    let (changes, _) = broadcast::channel(1024);
    store.watch_others(changes.clone());
    let (stop, shutdown) = watch::channel(false);
    let password = config.page_password.clone();
    let session_key = digest(
        format!(
            "tsforge monitor session key\0{}",
            password.as_deref().unwrap_or("")
        )
        .as_bytes(),
    );
    let app = Arc::new(App {
        store,
        changes,
        metrics: Metrics::default(),
        token: config.runner_token.as_deref().map(|t| digest(t.as_bytes())),
        password,
        session_key,
        secure_cookie: config.tls.is_some(),
        shutdown: shutdown.clone(),
    });
    let router = router(app);
    let tcp = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", config.listen))?;
    let addr = tcp.local_addr()?;
    let mut signal = shutdown;
    let until = async move {
        let _ = signal.wait_for(|s| *s).await;
    };
    let task = match &config.tls {
        Some((cert, key)) => {
            let acceptor = tls::acceptor(cert, key)?;
            let listener = tls::TlsListener::new(tcp, acceptor);
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(until)
                    .await
            })
        }
        None => {
            tokio::spawn(
                async move { axum::serve(tcp, router).with_graceful_shutdown(until).await },
            )
        }
    };
    Ok(Running { addr, stop, task })
}

fn router(app: Shared) -> Router {
    let runner = Router::new()
        .route(
            "/api/v1/events",
            post(post_events).layer(DefaultBodyLimit::max(model::MAX_BODY)),
        )
        .route(
            "/api/v1/runs/{run}/log",
            put(put_log).layer(DefaultBodyLimit::max(model::MAX_LOG)),
        )
        .route_layer(middleware::from_fn_with_state(app.clone(), runner_auth));
    let reader = Router::new()
        .route("/api/v1/deployments", get(list))
        .route("/api/v1/deployments/{run}", get(one))
        .route("/api/v1/deployments/{run}/events", get(events))
        .route("/api/v1/deployments/{run}/log", get(get_log))
        .route("/api/v1/stream", get(stream))
        .route("/metrics", get(metrics))
        .route("/", get(|| async { asset("index.html") }))
        .route("/index.html", get(|| async { asset("index.html") }))
        .route(
            "/deployment.html",
            get(|| async { asset("deployment.html") }),
        )
        // One deployment's page; its script reads the run from the path.
        .route(
            "/deployments/{run}",
            get(|| async { asset("deployment.html") }),
        )
        .route_layer(middleware::from_fn_with_state(app.clone(), reader_auth));
    Router::new()
        .merge(runner)
        .merge(reader)
        .route("/app.js", get(|| async { asset("app.js") }))
        .route("/style.css", get(|| async { asset("style.css") }))
        .route("/login", get(login_form).post(login))
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

fn internal(e: anyhow::Error) -> Response {
    eprintln!("tsforge monitor: {e:#}");
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

async fn count(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    app.metrics.request(res.status().as_u16());
    res
}

/// Writes need `Authorization: Bearer <runner token>` when the monitor has one.
async fn runner_auth(State(app): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(want) = &app.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| digest(t.trim().as_bytes()));
        // Both sides hashed: equal length, compared in constant time.
        let ok = given.is_some_and(|g| bool::from(g.ct_eq(want)));
        if !ok {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a bad or missing runner token (Authorization: Bearer …)",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

fn session_mac(app: &App, expiry: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&app.session_key).expect("any key length");
    mac.update(format!("tsforge-monitor-session:{expiry}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn session_ok(app: &App, headers: &HeaderMap) -> bool {
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for c in v.split(';') {
            let Some(val) = c.trim().strip_prefix(&format!("{COOKIE}=")) else {
                continue;
            };
            let Some((exp, sig)) = val.split_once('.') else {
                continue;
            };
            let Ok(exp) = exp.parse::<u64>() else {
                continue;
            };
            if (exp as f64) < model::now_epoch() {
                continue;
            }
            let want = session_mac(app, exp);
            if bool::from(want.as_bytes().ct_eq(sig.as_bytes())) {
                return true;
            }
        }
    }
    false
}

fn basic_ok(password: &str, headers: &HeaderMap) -> bool {
    let Some(b64) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let given = raw
        .iter()
        .position(|&b| b == b':')
        .map(|i| &raw[i + 1..])
        .unwrap_or(&[]);
    bool::from(digest(given).ct_eq(&digest(password.as_bytes())))
}

/// Reading needs the page password when the monitor has one: the session cookie of the
/// login form, or HTTP Basic for scripts. Pages send a browser to the login form.
async fn reader_auth(State(app): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(pw) = &app.password {
        if !session_ok(&app, req.headers()) && !basic_ok(pw, req.headers()) {
            let path = req.uri().path();
            if !path.starts_with("/api/") && path != "/metrics" {
                return Redirect::to("/login").into_response();
            }
            let mut r = error(StatusCode::UNAUTHORIZED, "the page password is needed");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tsforge monitor\""),
            );
            return r;
        }
    }
    next.run(req).await
}

async fn login_form() -> Response {
    asset("login.html")
}

#[derive(Deserialize)]
struct LoginForm {
    password: String,
}

async fn login(State(app): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    let Some(pw) = &app.password else {
        return Redirect::to("/").into_response();
    };
    if !bool::from(digest(f.password.as_bytes()).ct_eq(&digest(pw.as_bytes()))) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            LOGIN_HTML.replace("<!--error-->", "<p class=\"error\">Wrong password.</p>"),
        )
            .into_response();
    }
    let exp = model::now_epoch() as u64 + SESSION_SECONDS;
    let cookie = format!(
        "{COOKIE}={exp}.{}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{}",
        session_mac(&app, exp),
        if app.secure_cookie { "; Secure" } else { "" }
    );
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("ASCII cookie"),
    );
    r
}

const LOGIN_HTML: &str = include_str!("../assets/login.html");

fn asset(name: &str) -> Response {
    let (body, ty): (&'static str, &str) = match name {
        "index.html" => (
            include_str!("../assets/index.html"),
            "text/html; charset=utf-8",
        ),
        "deployment.html" => (
            include_str!("../assets/deployment.html"),
            "text/html; charset=utf-8",
        ),
        "login.html" => (LOGIN_HTML, "text/html; charset=utf-8"),
        "app.js" => (
            include_str!("../assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "style.css" => (
            include_str!("../assets/style.css"),
            "text/css; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, ty)], body).into_response()
}

async fn post_events(
    State(app): State<Shared>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let t0 = Instant::now();
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                format!(
                    "the body: {} (at most {} bytes)",
                    e.body_text(),
                    model::MAX_BODY
                ),
            )
        }
    };
    let batch = match model::parse_batch(&body) {
        Ok(b) => b,
        Err(Refusal::Bad(m)) => return error(StatusCode::BAD_REQUEST, m),
        Err(Refusal::TooLarge(m)) => return error(StatusCode::PAYLOAD_TOO_LARGE, m),
    };
    match app.store.ingest(batch).await {
        Ok(r) => {
            app.metrics.ingested(r.stored, r.duplicates, t0.elapsed());
            if let Some(d) = r.changed {
                let _ = app.changes.send(d);
            }
            Json(json!({"stored": r.stored, "duplicates": r.duplicates})).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn put_log(
    State(app): State<Shared>,
    Path(run): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                format!(
                    "the log: {} (at most {} bytes)",
                    e.body_text(),
                    model::MAX_LOG
                ),
            )
        }
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the log is not UTF-8 text");
    };
    match app.store.put_log(run.clone(), text).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("run {run:?}: no event of this run was stored yet"),
        ),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    sequence: Option<String>,
}

const STATES: &[&str] = &["running", "restarting", "succeeded", "failed"];

async fn list(
    State(app): State<Shared>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Some(s) = &q.state {
        if !STATES.contains(&s.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state={s:?}: expected running, restarting, succeeded or failed"),
            );
        }
    }
    match app
        .store
        .deployments(Filter {
            state: q.state,
            sequence: q.sequence,
        })
        .await
    {
        Ok(d) => Json(json!({"deployments": d})).into_response(),
        Err(e) => internal(e),
    }
}

fn not_found(run: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no deployment with run {run:?}"),
    )
}

async fn one(State(app): State<Shared>, Path(run): Path<String>) -> Response {
    match app.store.deployment(run.clone()).await {
        Ok(Some((d, steps))) => Json(json!({"deployment": d, "steps": steps})).into_response(),
        Ok(None) => not_found(&run),
        Err(e) => internal(e),
    }
}

async fn events(State(app): State<Shared>, Path(run): Path<String>) -> Response {
    match app.store.events(run.clone()).await {
        Ok(Some(ev)) => Json(json!({"events": ev})).into_response(),
        Ok(None) => not_found(&run),
        Err(e) => internal(e),
    }
}

async fn get_log(State(app): State<Shared>, Path(run): Path<String>) -> Response {
    match app.store.get_log(run.clone()).await {
        Ok(Some(t)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no log stored for run {run:?}"),
        ),
        Err(e) => internal(e),
    }
}

async fn stream(State(app): State<Shared>) -> Response {
    let rx = app.changes.subscribe();
    let shutdown = app.shutdown.clone();
    let s = futures_util::stream::unfold((rx, shutdown), |(mut rx, mut shutdown)| async move {
        loop {
            let next = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => None,
                m = rx.recv() => Some(m),
            };
            match next {
                None => return None,
                Some(Ok(d)) => {
                    let ev = SseEvent::default()
                        .event("deployment")
                        .json_data(&d)
                        .unwrap_or_else(|_| SseEvent::default().comment("unencodable"));
                    return Some((Ok::<_, std::convert::Infallible>(ev), (rx, shutdown)));
                }
                // A slow reader missed changes: it carries on with the next ones.
                Some(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Some(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

async fn metrics(State(app): State<Shared>) -> Response {
    let states = match app.store.count_by_state().await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&states),
    )
        .into_response()
}

async fn healthz(State(app): State<Shared>) -> Response {
    match app.store.health().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database does not answer: {e:#}"),
        )
            .into_response(),
    }
}
