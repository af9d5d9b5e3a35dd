//! The REST API: Flink's routes and JSON shapes (also under `/v1`), the
//! OpenAPI document, the web UI and Prometheus `/metrics`, on one port.

use crate::session::{RunRequest, Session};
use crate::tenancy::Caller;
use crate::upgrade::UpgradeRequest;
use crate::{ApiError, ApiResult, ErrorKind, views};
use axum::Extension;
use axum::extract::Request;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The OpenAPI document of the routes below.
pub const OPENAPI: &str = include_str!("openapi.json");
const UI: &str = include_str!("ui/index.html");

/// Runs blocking session work (compiling, planning, storage) off the
/// request threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the request handler failed: {e}")))?
}

/// The API routes (mounted at `/` and at `/v1`).
fn api() -> Router<Session> {
    Router::new()
        .route("/config", get(config))
        .route("/overview", get(overview))
        .route("/jobmanager/config", get(jobmanager_config))
        .route("/jars", get(list_jars))
        .route(
            "/jars/upload",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/jars/{id}", axum::routing::delete(delete_jar))
        .route("/jars/{id}/run", post(run_jar))
        .route("/jobs", get(list_jobs))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job).patch(patch_job))
        .route("/jobs/{id}/stop", post(stop_job))
        .route("/jobs/{id}/upgrade", post(upgrade_job))
        .route("/jobs/{id}/upgrade/{trigger}", get(upgrade_status))
        .route("/jobs/{id}/versions", get(job_versions))
        .route("/jobs/{id}/rescaling", axum::routing::patch(rescale_job))
        .route("/jobs/{id}/rescaling/{trigger}", get(upgrade_status))
        .route(
            "/jobs/{id}/resource-requirements",
            get(resource_requirements).put(set_resource_requirements),
        )
        .route("/jobs/{id}/savepoints", post(trigger_savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(savepoint_status))
        .route(
            "/jobs/{id}/checkpoints",
            get(checkpoints).post(trigger_checkpoint),
        )
        .route("/jobs/{id}/checkpoints/config", get(checkpoint_config))
        .route("/jobs/{id}/checkpoints/{trigger}", get(checkpoint_status))
        .route(
            "/jobs/{id}/checkpoints/details/{cid}",
            get(checkpoint_details),
        )
        .route("/jobs/{id}/exceptions", get(exceptions))
        .route("/jobs/{id}/config", get(job_config))
        .route("/jobs/{id}/plan", get(job_plan))
        .route("/jobs/{id}/execution-result", get(execution_result))
        .route("/jobs/{id}/accumulators", get(accumulators))
        .route("/jobs/metrics", get(jobs_metrics))
        .route("/jobs/{id}/metrics", get(job_metrics))
        .route("/jobs/{id}/vertices/{vid}", get(vertex))
        .route("/jobs/{id}/vertices/{vid}/metrics", get(vertex_metrics))
        .route(
            "/jobs/{id}/vertices/{vid}/watermarks",
            get(vertex_watermarks),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/backpressure",
            get(vertex_backpressure),
        )
        .route("/savepoint-disposal", post(dispose_savepoint))
        .route("/savepoint-disposal/{trigger}", get(disposal_status))
        .route("/jobmanager/metrics", get(jobmanager_metrics))
        .route("/taskmanagers", get(taskmanagers))
        .route("/taskmanagers/{tmid}", get(taskmanager))
        .route("/usage", get(usage))
}

/// Identifies the caller by its bearer token when the session has tenants:
/// no token or an unknown one is 401, and nothing else is said.
async fn authenticate(State(s): State<Session>, mut req: Request, next: Next) -> Response {
    let caller = if s.tenancy().enabled() {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        match token.and_then(|t| s.tenancy().identify(t)) {
            Some(c) => c,
            None => {
                let message = if token.is_some() {
                    "the API token is not valid; check the token your administrator gave you"
                } else {
                    "this session needs an API token: send `Authorization: Bearer <token>` \
                     (the CLI reads WEIR_TOKEN or --token)"
                };
                let mut r = ApiError::new(ErrorKind::Unauthorized, message).into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"weir\""),
                );
                return r;
            }
        }
    } else {
        Caller::Open
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn admin_only(caller: &Caller, what: &str) -> ApiResult<()> {
    match caller {
        Caller::Tenant(t) => Err(ApiError::forbidden(format!(
            "{what} is for the session's administrator; tenant {} cannot read it",
            t.name
        ))),
        _ => Ok(()),
    }
}

/// Every route of the session.
pub fn router(session: Session) -> Router {
    let limit = session.config().rest_max_content_length as usize;
    Router::new()
        .merge(api())
        .nest("/v1", api())
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            session.clone(),
            authenticate,
        ))
        // The page and the route list hold no data; the page asks for a
        // token when the API answers 401.
        .route("/", get(|| async { Html(UI) }))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(session)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {}; GET /openapi.json lists the routes",
        uri.path()
    ))
}

/// Errors answered by the framework itself (a path, query or body it could
/// not read; a body over the limit) in the API's shape: `{"errors": [...]}`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 << 10).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned()
    } else {
        text
    };
    answer(status, message)
}

async fn wrong_method(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{method} is not allowed on {}; GET /openapi.json lists each route's methods",
            uri.path()
        ),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(s): State<Session>, Extension(caller): Extension<Caller>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&s, &caller),
    )
        .into_response()
}

async fn config(State(s): State<Session>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Json(json!({
        "refresh-interval": 3000,
        "timezone-name": "UTC",
        "timezone-offset": 0,
        "flink-version": concat!("weir ", env!("CARGO_PKG_VERSION")),
        "flink-revision": "",
        "weir-version": env!("CARGO_PKG_VERSION"),
        "now": now,
        "features": {
            "web-submit": true,
            "web-cancel": true,
            "web-history": false,
        },
        "data-dir": caller.tenant().is_none().then(|| s.data_dir().display().to_string()),
        "ha-storage-dir": caller.tenant().is_none().then(|| s.config().ha_storage_dir.clone()),
        "tenant": caller.tenant().map(|t| t.name.clone()),
        "tenancy": s.tenancy().enabled(),
    }))
}

async fn overview(State(s): State<Session>, Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(views::overview(&s, &caller))
}

async fn jobmanager_config(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    admin_only(&caller, "the session's configuration")?;
    Ok(Json(Value::Array(
        s.config()
            .to_display_map()
            .into_iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )))
}

async fn list_jars(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
) -> Json<Value> {
    let address = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let files: Vec<Value> = s
        .jars(&caller)
        .into_iter()
        .map(|j| {
            json!({
                "id": j.id,
                "name": j.name,
                "uploaded": j.uploaded,
                "size": j.size,
                "module-hash": j.module_hash,
                "entry": j.entries.iter().map(|e| json!({"name": e, "description": null})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "address": address, "files": files }))
}

async fn upload(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<Value>> {
    let rest_limit = s.config().rest_max_content_length;
    // A tenant's module-size quota is checked as the bytes arrive.
    let (limit, limit_key) = match caller.tenant().and_then(|t| {
        t.quota
            .max_module_size
            .filter(|m| *m < rest_limit)
            .map(|m| (m, t.key("max-module-size")))
    }) {
        Some((m, key)) => (m, key),
        None => (rest_limit, "rest.server.max-content-length".to_owned()),
    };
    let mut multipart = multipart.map_err(|e| {
        ApiError::bad_request(format!(
            "expected a multipart/form-data upload with the job's .wasm as field `jarfile`: {e}"
        ))
    })?;
    let _slot = match s.upload_slot(&caller) {
        Ok(slot) => slot,
        Err(e) => {
            // Read (and drop) a bounded part of the request, so that the
            // client sees the answer rather than a reset connection.
            let mut left = limit.saturating_add(DRAIN_LIMIT);
            while let Ok(Some(mut field)) = multipart.next_field().await {
                while let Ok(Some(chunk)) = field.chunk().await {
                    left = left.saturating_sub(chunk.len() as u64);
                    if left == 0 {
                        return Err(e);
                    }
                }
            }
            return Err(e);
        }
    };
    let mut file: Option<(String, Bytes)> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, rest_limit)),
        };
        if field.file_name().is_none() && field.name() != Some("jarfile") {
            continue;
        }
        let name = field
            .file_name()
            .map(str::to_owned)
            .unwrap_or_else(|| "job.wasm".into());
        let mut field = field;
        let mut buf = bytes::BytesMut::new();
        let mut total = 0u64;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| multipart_error(e, rest_limit))?
        {
            total += chunk.len() as u64;
            if total <= limit {
                buf.extend_from_slice(&chunk);
            } else if total > limit.saturating_add(DRAIN_LIMIT) {
                break;
            }
        }
        if total > limit {
            // A bounded rest of the request was read, so that the client
            // sees this answer rather than a reset connection.
            return Err(ApiError::new(
                ErrorKind::TooLarge,
                format!(
                    "the upload ({total} bytes or more) is larger than {limit_key} ({limit} \
                     bytes); upload a smaller module"
                ),
            ));
        }
        file = Some((name, buf.freeze()));
        break;
    }
    let Some((name, bytes)) = file else {
        return Err(ApiError::bad_request(
            "the upload holds no file; send the job's .wasm as the multipart field `jarfile`",
        ));
    };
    let jar = blocking(move || s.upload(&name, &bytes, &caller)).await?;
    Ok(Json(json!({
        "filename": jar.id,
        "id": jar.id,
        "status": "success",
        "entry": jar.entries,
    })))
}

/// How much of an oversized upload is read beyond the limit before the
/// connection is dropped.
const DRAIN_LIMIT: u64 = 8 << 20;

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "the upload is larger than rest.server.max-content-length ({limit} bytes); \
                 raise that setting or upload a smaller module"
            ),
        )
    } else {
        ApiError::bad_request(format!(
            "the multipart upload is malformed: {}",
            e.body_text()
        ))
    }
}

async fn delete_jar(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    blocking(move || s.delete_jar(&id, &caller)).await?;
    Ok(Json(json!({})))
}

/// Flink's JarRunRequestBody.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunBody {
    entry_class: Option<String>,
    /// Older clients' spelling of `entryClass` (which wins).
    #[serde(rename = "entry-class")]
    entry_class_dashed: Option<String>,
    program_args: Option<String>,
    program_args_list: Option<Vec<String>>,
    parallelism: Option<i64>,
    savepoint_path: Option<String>,
    allow_non_restored_state: Option<bool>,
    flink_configuration: Option<BTreeMap<String, Value>>,
    /// Also configuration (`flinkConfiguration` wins for a key in both).
    configuration: Option<BTreeMap<String, Value>>,
    job_id: Option<String>,
    restore_mode: Option<String>,
    claim_mode: Option<String>,
}

/// Parses an optional JSON body, with a message naming the problem.
fn json_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes, what: &str) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let invalid =
        |e: String| ApiError::bad_request(format!("the {what} request body is not valid: {e}"));
    let value: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if !value.is_object() {
        return Err(invalid("expected a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

/// The job's arguments: `programArgsList`, else `programArgs` split at
/// whitespace (Flink's two spellings); `None` when neither is given.
fn program_args(list: Option<Vec<String>>, line: Option<String>) -> Option<Vec<String>> {
    list.or_else(|| line.map(|l| l.split_whitespace().map(str::to_owned).collect()))
}

fn config_value(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Flink's query parameters of `/jars/:id/run` (a value in the body wins).
#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    #[serde(rename = "entry-class")]
    entry_class: Option<String>,
    parallelism: Option<String>,
    #[serde(rename = "programArg")]
    program_arg: Option<String>,
    #[serde(rename = "savepointPath")]
    savepoint_path: Option<String>,
    #[serde(rename = "allowNonRestoredState")]
    allow_non_restored_state: Option<String>,
}

impl RunQuery {
    /// Fills what the body leaves out.
    fn under(self, mut b: RunBody) -> ApiResult<RunBody> {
        if b.entry_class.as_deref().is_none_or(str::is_empty)
            && b.entry_class_dashed.as_deref().is_none_or(str::is_empty)
        {
            b.entry_class = self.entry_class;
        }
        if b.parallelism.is_none()
            && let Some(p) = self.parallelism
        {
            b.parallelism = Some(p.trim().parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "parallelism '{p}' is not a number; give a number from 1 to the job's max \
                     parallelism"
                ))
            })?);
        }
        if b.program_args_list.is_none()
            && b.program_args.is_none()
            && let Some(a) = self.program_arg
        {
            b.program_args_list = Some(
                a.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
        if b.savepoint_path.as_deref().is_none_or(str::is_empty) {
            b.savepoint_path = b
                .savepoint_path
                .filter(|p| !p.is_empty())
                .or(self.savepoint_path);
        }
        if b.allow_non_restored_state.is_none()
            && let Some(a) = self.allow_non_restored_state
        {
            b.allow_non_restored_state = Some(match a.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "allowNonRestoredState '{a}' is not true or false"
                    )));
                }
            });
        }
        Ok(b)
    }
}

async fn run_jar(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let b: RunBody = q.under(json_body(&body, "run")?)?;
    if b.job_id.is_some() {
        return Err(ApiError::bad_request(
            "jobId is not supported: a job gets a new id",
        ));
    }
    // Flink's claimMode (and restoreMode before it): CLAIM or NO_CLAIM.
    let claim = match b.claim_mode.or(b.restore_mode).as_deref().map(str::trim) {
        None | Some("") => None,
        Some(m) => match m.to_ascii_uppercase().replace('-', "_").as_str() {
            "CLAIM" => Some("CLAIM"),
            "NO_CLAIM" | "LEGACY" => Some("NO_CLAIM"),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "claimMode '{m}' is not known; use CLAIM or NO_CLAIM"
                )));
            }
        },
    };
    let parallelism = match b.parallelism {
        None => None,
        Some(p) if (1..=i64::from(u16::MAX)).contains(&p) => Some(p as u32),
        Some(p) => {
            return Err(ApiError::bad_request(format!(
                "parallelism {p} is out of range; give a number from 1 to the job's max parallelism"
            )));
        }
    };
    let args = program_args(b.program_args_list, b.program_args).unwrap_or_default();
    let entry = b
        .entry_class
        .filter(|e| !e.is_empty())
        .or(b.entry_class_dashed.filter(|e| !e.is_empty()));
    let mut config = b.configuration.unwrap_or_default();
    config.extend(b.flink_configuration.unwrap_or_default());
    let req = RunRequest {
        entry,
        args,
        parallelism,
        savepoint_path: b.savepoint_path.filter(|p| !p.is_empty()),
        allow_non_restored: b.allow_non_restored_state.unwrap_or(false),
        config: config
            .into_iter()
            .map(|(k, v)| (k, config_value(v)))
            .chain(claim.map(|m| {
                (
                    "execution.state-recovery.claim-mode".to_owned(),
                    m.to_owned(),
                )
            }))
            .collect(),
    };
    let job = blocking(move || s.run_jar(&id, req, &caller)).await?;
    Ok(Json(json!({ "jobid": job.to_string() })))
}

async fn list_jobs(State(s): State<Session>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let jobs: Vec<Value> = s
        .jobs(&caller)
        .iter()
        .map(|j| json!({"id": j.id.to_string(), "status": j.state().name()}))
        .collect();
    Json(json!({ "jobs": jobs }))
}

async fn jobs_overview(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let mut jobs = s.jobs(&caller);
    jobs.sort_by_key(|j| std::cmp::Reverse(j.status.lock().start_ms));
    Json(json!({ "jobs": jobs.iter().map(|j| views::job_overview(j)).collect::<Vec<_>>() }))
}

async fn job(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::job_details(&*s.job(&id, &caller)?)))
}

#[derive(Debug, Deserialize)]
struct PatchQuery {
    mode: Option<String>,
}

async fn patch_job(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<PatchQuery>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    match q.mode.as_deref() {
        None | Some("cancel") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode={other} is not supported; use mode=cancel, or POST /jobs/{id}/stop to stop \
                 with a savepoint"
            )));
        }
    }
    s.cancel(&id, &caller)?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopBody {
    target_directory: Option<String>,
    drain: Option<bool>,
    /// Flink's CANONICAL or NATIVE: savepoints have one format.
    #[serde(rename = "formatType")]
    _format_type: Option<String>,
    /// Each stop gets a new request-id.
    #[serde(rename = "triggerId")]
    _trigger_id: Option<String>,
}

async fn stop_job(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let b: StopBody = json_body(&body, "stop")?;
    let trigger = blocking(move || {
        s.savepoint(
            &id,
            b.target_directory,
            true,
            b.drain.unwrap_or(false),
            &caller,
        )
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SavepointBody {
    target_directory: Option<String>,
    cancel_job: Option<bool>,
    /// Flink's CANONICAL or NATIVE: savepoints have one format.
    #[serde(rename = "formatType")]
    _format_type: Option<String>,
    /// Each savepoint gets a new request-id.
    #[serde(rename = "triggerId")]
    _trigger_id: Option<String>,
}

async fn trigger_savepoint(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let b: SavepointBody = json_body(&body, "savepoint")?;
    let trigger = blocking(move || {
        s.savepoint(
            &id,
            b.target_directory,
            b.cancel_job.unwrap_or(false),
            false,
            &caller,
        )
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpgradeBody {
    jar_id: Option<String>,
    entry_class: Option<String>,
    program_args_list: Option<Vec<String>>,
    program_args: Option<String>,
    allow_non_restored_state: Option<bool>,
    target_directory: Option<String>,
    restart: Option<bool>,
    parallelism: Option<u32>,
}

async fn upgrade_job(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // An unknown job is the first thing said, whatever the body.
    s.job(&id, &caller)?;
    let b: UpgradeBody = json_body(&body, "upgrade")?;
    let Some(jar_id) = b.jar_id.filter(|j| !j.is_empty()) else {
        return Err(ApiError::bad_request(
            "give jarId: the id of the new module, uploaded with POST /jars/upload",
        ));
    };
    let args = program_args(b.program_args_list, b.program_args);
    let req = UpgradeRequest {
        jar_id: Some(jar_id),
        parallelism: b.parallelism,
        entry: b.entry_class,
        args,
        allow_non_restored: b.allow_non_restored_state.unwrap_or(false),
        target_directory: b.target_directory.filter(|d| !d.is_empty()),
        restart: b.restart.unwrap_or(false),
    };
    let trigger = blocking(move || s.upgrade(&id, req, &caller)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))))
}

#[derive(Debug, Deserialize)]
struct RescaleQuery {
    parallelism: Option<String>,
    #[serde(rename = "targetDirectory")]
    target_directory: Option<String>,
}

/// Flink's `PATCH /jobs/:id/rescaling?parallelism=N`: a savepoint and a
/// restart from it at parallelism N; the operation is read back at
/// `/jobs/:id/rescaling/:request-id`.
async fn rescale_job(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<RescaleQuery>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    s.job(&id, &caller)?;
    let parallelism = match q.parallelism.as_deref().map(str::parse::<u32>) {
        Some(Ok(p)) if p > 0 => p,
        Some(_) => {
            return Err(ApiError::bad_request(
                "parallelism must be a whole number of at least 1",
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "give the new parallelism: PATCH /jobs/:id/rescaling?parallelism=N",
            ));
        }
    };
    let target = q.target_directory.filter(|d| !d.is_empty());
    let trigger = blocking(move || s.rescale(&id, parallelism, target, &caller)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))))
}

async fn resource_requirements(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    s.resource_requirements(&id, &caller).map(Json)
}

/// Flink's `PUT /jobs/:id/resource-requirements`: vertex id to
/// `{"parallelism": {"lowerBound": l, "upperBound": u}}`.
async fn set_resource_requirements(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    s.job(&id, &caller)?;
    let invalid = |e: String| {
        ApiError::bad_request(format!(
            "the resource requirements are not valid: {e}; give {{\"<vertex id>\": \
             {{\"parallelism\": {{\"lowerBound\": 1, \"upperBound\": N}}}}}}"
        ))
    };
    let value: Value = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    let Some(vertices) = value.as_object() else {
        return Err(invalid("expected a JSON object".into()));
    };
    let mut asks = Vec::with_capacity(vertices.len());
    for (vid, v) in vertices {
        let bound = |name: &str| {
            v.get("parallelism")
                .and_then(|p| p.get(name))
                .and_then(Value::as_i64)
                .ok_or_else(|| invalid(format!("vertex {vid} has no parallelism.{name}")))
        };
        asks.push((vid.clone(), bound("lowerBound")?, bound("upperBound")?));
    }
    let trigger = blocking(move || s.set_resource_requirements(&id, &asks, &caller)).await?;
    Ok(Json(match trigger {
        Some(t) => json!({ "request-id": t }),
        None => json!({}),
    }))
}

async fn upgrade_status(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path((id, trigger)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    s.upgrade_status(&id, &trigger, &caller).map(Json)
}

async fn job_versions(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let versions: Vec<Value> = s
        .versions(&id, &caller)?
        .into_iter()
        .map(|v| {
            json!({
                "module-hash": v.module_hash,
                "jar-id": v.jar_id,
                "version": v.version,
                "since": v.since,
                "how": v.how,
                "from": v.from,
            })
        })
        .collect();
    Ok(Json(json!({ "versions": versions })))
}

async fn savepoint_status(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path((id, trigger)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let job = s.job(&id, &caller)?;
    views::operation(&job, &trigger).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "there is no savepoint operation {trigger} for job {id}; use the request-id that \
             triggering the savepoint returned"
        ))
    })
}

async fn checkpoints(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::checkpoints(&*s.job(&id, &caller)?)))
}

async fn checkpoint_config(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::checkpoint_config(&*s.job(&id, &caller)?)))
}

async fn checkpoint_details(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path((id, cid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let job = s.job(&id, &caller)?;
    let n: u64 = cid
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{cid}' is not a checkpoint id")))?;
    views::checkpoint_details(&job, n).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "checkpoint {n} of job {id} is not in its recent history"
        ))
    })
}

#[derive(Debug, Deserialize)]
struct ExceptionsQuery {
    #[serde(rename = "maxExceptions")]
    max_exceptions: Option<usize>,
}

async fn exceptions(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<ExceptionsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let max = q.max_exceptions.unwrap_or(20);
    Ok(Json(views::exceptions(&*s.job(&id, &caller)?, max)))
}

async fn job_config(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::job_config(&*s.job(&id, &caller)?)))
}

async fn execution_result(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::execution_result(&*s.job(&id, &caller)?)))
}

async fn accumulators(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    s.job(&id, &caller)?;
    Ok(Json(views::accumulators()))
}

#[derive(Debug, Deserialize)]
struct AggregateQuery {
    get: Option<String>,
    agg: Option<String>,
    jobs: Option<String>,
}

/// Job metrics aggregated over the caller's jobs (or those in `jobs`).
async fn jobs_metrics(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<AggregateQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let only: Option<Vec<&str>> = q
        .jobs
        .as_deref()
        .map(|j| j.split(',').map(str::trim).collect());
    let rows: Vec<_> = s
        .jobs(&caller)
        .iter()
        .filter(|j| {
            only.as_ref()
                .is_none_or(|o| o.contains(&j.id.to_string().as_str()))
        })
        .map(|j| views::job_metric_values(j))
        .collect();
    Ok(Json(views::aggregated_metrics(
        &rows,
        q.get.as_deref(),
        q.agg.as_deref(),
    )))
}

async fn job_plan(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"plan": views::plan(&*s.job(&id, &caller)?)})))
}

async fn job_metrics(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<Json<Value>> {
    let values = views::job_metric_values(&*s.job(&id, &caller)?);
    Ok(Json(views::metrics_answer(&values, q.get.as_deref())))
}

/// The job and the chain shown as vertex `vid`.
fn vertex_of(
    s: &Session,
    id: &str,
    vid: &str,
    caller: &Caller,
) -> ApiResult<(std::sync::Arc<crate::JobEntry>, usize)> {
    let job = s.job(id, caller)?;
    let chain = views::find_vertex(&job, vid).map(|c| c.id).ok_or_else(|| {
        ApiError::not_found(format!(
            "job {id} has no vertex {vid}; GET /jobs/{id} lists its vertices"
        ))
    })?;
    Ok((job, chain))
}

async fn vertex(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path((id, vid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (job, c) = vertex_of(&s, &id, &vid, &caller)?;
    Ok(Json(views::vertex_details(&job, &job.exec.chains[c])))
}

#[derive(Debug, Deserialize)]
struct MetricsQuery {
    get: Option<String>,
}

async fn vertex_metrics(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path((id, vid)): Path<(String, String)>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<Json<Value>> {
    let (job, c) = vertex_of(&s, &id, &vid, &caller)?;
    let values = views::vertex_metric_values(&job, &job.exec.chains[c]);
    Ok(Json(views::metrics_answer(&values, q.get.as_deref())))
}

async fn vertex_watermarks(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path((id, vid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (job, c) = vertex_of(&s, &id, &vid, &caller)?;
    Ok(Json(views::vertex_watermarks(&job, &job.exec.chains[c])))
}

async fn vertex_backpressure(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path((id, vid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (job, c) = vertex_of(&s, &id, &vid, &caller)?;
    Ok(Json(views::vertex_backpressure(&job, &job.exec.chains[c])))
}

async fn jobmanager_metrics(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<MetricsQuery>,
) -> Json<Value> {
    let values = views::jobmanager_metric_values(&s, &caller);
    Json(views::metrics_answer(&values, q.get.as_deref()))
}

async fn taskmanagers(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    Json(views::taskmanagers(&s, &caller))
}

/// Flink's CheckpointTriggerRequestBody.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointBody {
    checkpoint_type: Option<String>,
    trigger_id: Option<String>,
}

async fn trigger_checkpoint(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let b: CheckpointBody = json_body(&body, "checkpoint")?;
    let full = match b
        .checkpoint_type
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("CONFIGURED") => false,
        Some("FULL") => true,
        Some("INCREMENTAL") => {
            return Err(ApiError::bad_request(
                "an incremental checkpoint cannot be asked for explicitly; use CONFIGURED (the \
                 job's execution.checkpointing.incremental) or FULL",
            ));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "checkpointType '{other}' is not known; use CONFIGURED or FULL"
            )));
        }
    };
    let trigger = blocking(move || s.checkpoint(&id, full, b.trigger_id, &caller)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))))
}

async fn checkpoint_status(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path((id, trigger)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let job = s.job(&id, &caller)?;
    views::checkpoint_operation(&job, &trigger)
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "there is no checkpoint operation {trigger} for job {id}; use the request-id \
                 that triggering the checkpoint returned"
            ))
        })
}

#[derive(Debug, Default, Deserialize)]
struct DisposalBody {
    #[serde(rename = "savepoint-path")]
    savepoint_path: Option<String>,
}

async fn dispose_savepoint(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let b: DisposalBody = json_body(&body, "savepoint disposal")?;
    let path = b.savepoint_path.unwrap_or_default();
    let trigger = blocking(move || s.dispose(&path, &caller)).await?;
    Ok(Json(json!({ "request-id": trigger })))
}

async fn disposal_status(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(trigger): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::disposal(&s.disposal(&trigger, &caller)?)))
}

/// What each tenant the caller may see has used, for billing.
async fn usage(State(s): State<Session>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let tenants: Vec<Value> = s
        .usage(&caller)
        .into_iter()
        .map(|u| {
            json!({
                "tenant": u.tenant,
                "busy-seconds": u.busy_ns as f64 / 1e9,
                "guest-memory-peak-bytes": u.memory_peak,
                "records-in": u.records_in,
                "records-out": u.records_out,
                "jobs-running": u.jobs_running,
                "jobs-total": u.jobs_total,
                "slots-used": u.slots_used,
                "quota": u.quota.map(|q| json!({
                    "slots": q.slots,
                    "jobs": q.jobs,
                    "max-module-size": q.max_module_size,
                    "memory-per-instance": q.memory_per_instance,
                    "cpu-per-call-ms": q.cpu_per_call.map(|d| d.as_millis() as u64),
                    "fuel-per-call": q.fuel_per_call,
                })),
            })
        })
        .collect();
    Json(json!({ "tenants": tenants }))
}

async fn taskmanager(
    State(s): State<Session>,
    Extension(caller): Extension<Caller>,
    Path(tmid): Path<String>,
) -> ApiResult<Json<Value>> {
    let all = views::taskmanagers(&s, &caller);
    all["taskmanagers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == tmid.as_str()).cloned())
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "there is no task manager {tmid}; GET /taskmanagers lists them"
            ))
        })
}

/// An error as Flink answers it: a status code and
/// `{"errors": ["what happened and what to do"]}`.
fn answer(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "errors": [message] })),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        answer(status, self.message)
    }
}
