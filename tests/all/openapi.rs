//! `/openapi.json` is exact: a fuzzer driven by it sends each documented
//! operation valid and hostile paths, queries and bodies, and every answer
//! has a documented status, the documented content type and a body that
//! matches the documented schema; none is a server error.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use weir_tests::cluster::SessionProcess;
use weir_tests::{CLICK_EVENT_COUNT_WASM, temp_dir};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// Where `v` breaks `schema` (a subset of JSON Schema: `$ref`, `type`,
/// `nullable`, `required`, `properties`, `items`, `additionalProperties`,
/// `enum`).
fn violations(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return violations(doc, &doc["components"]["schemas"][name], v, at, out);
    }
    if v.is_null() && schema["nullable"] == true {
        return;
    }
    let ok = match schema["type"].as_str() {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(other) => panic!("the document uses type {other}"),
    };
    if !ok {
        out.push(format!("{at}: {v} is not {}", schema["type"]));
        return;
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {values:?}"));
    }
    if let Some(o) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            if !o.contains_key(r.as_str().unwrap()) {
                out.push(format!("{at}: {r} is missing"));
            }
        }
        for (k, x) in o {
            let sub = &schema["properties"][k];
            if !sub.is_null() {
                violations(doc, sub, x, &format!("{at}.{k}"), out);
            } else if schema["additionalProperties"].is_object() {
                violations(
                    doc,
                    &schema["additionalProperties"],
                    x,
                    &format!("{at}.{k}"),
                    out,
                );
            }
        }
    }
    if let Some(a) = v.as_array()
        && schema["items"].is_object()
    {
        for (i, x) in a.iter().enumerate() {
            violations(doc, &schema["items"], x, &format!("{at}[{i}]"), out);
        }
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const HOSTILE: &[&str] = &[
    "",
    "0",
    "-1",
    "..",
    "../../etc/passwd",
    "%00",
    "ffffffffffffffffffffffffffffffff",
    "0123456789abcdef0123456789abcdeg",
    "null",
    "{}",
    "🦀",
    "a b",
    "\u{0}",
    "/proc/self/environ",
    "file:///etc",
    "s3://bucket/x",
    "http://169.254.169.254/",
    "CLAIM",
    "FULL",
    "true",
    "18446744073709551616",
];

fn hostile(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => "x".repeat(rng.random_range(100..5000)),
        1 => (0..rng.random_range(1..40))
            .map(|_| char::from_u32(rng.random_range(1..0x3000)).unwrap_or('?'))
            .collect(),
        _ => HOSTILE[rng.random_range(0..HOSTILE.len())].to_owned(),
    }
}

/// A value for a schema: usually of its type, sometimes of another.
fn value_for(doc: &Value, schema: &Value, rng: &mut StdRng, depth: u32) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return value_for(doc, &doc["components"]["schemas"][name], rng, depth);
    }
    if rng.random_bool(0.2) || depth > 3 {
        return [
            json!(null),
            json!(-1),
            json!(1e300),
            json!("x"),
            json!(true),
            json!([]),
            json!({}),
            json!(hostile(rng)),
        ][rng.random_range(0..8)]
        .clone();
    }
    if let Some(values) = schema["enum"].as_array() {
        return values[rng.random_range(0..values.len())].clone();
    }
    match schema["type"].as_str() {
        Some("object") => {
            let mut o = serde_json::Map::new();
            for (k, sub) in schema["properties"].as_object().into_iter().flatten() {
                if rng.random_bool(0.6) {
                    o.insert(k.clone(), value_for(doc, sub, rng, depth + 1));
                }
            }
            if rng.random_bool(0.1) {
                o.insert(hostile(rng), json!(hostile(rng)));
            }
            Value::Object(o)
        }
        Some("array") => (0..rng.random_range(0..4))
            .map(|_| value_for(doc, &schema["items"], rng, depth + 1))
            .collect(),
        Some("integer") => json!(rng.random_range(-3i64..100_000)),
        Some("boolean") => json!(rng.random_bool(0.5)),
        _ => json!(hostile(rng)),
    }
}

#[test]
fn answers_match_the_openapi_document_under_fuzzing() {
    let dir = temp_dir();
    let s = SessionProcess::start(Path::new(WEIR), dir.path(), 2, &[]);
    let api = s.api();
    let jar = api.upload_file(CLICK_EVENT_COUNT_WASM);
    let job = api.run(
        &jar,
        json!({"programArgsList": ["--rate", "200", "--discard"],
               "flinkConfiguration": {"execution.checkpointing.interval": "200ms"}}),
    );
    api.wait_for_state(&job, "RUNNING", Duration::from_secs(60));
    let (_, v) = api.post(&format!("/jobs/{job}/savepoints"), json!({}));
    let trigger = v["request-id"].as_str().unwrap().to_owned();
    api.wait_for_savepoint(&job, &trigger, Duration::from_secs(60))
        .unwrap();
    let (_, details) = api.get(&format!("/jobs/{job}"));
    let vertex = details["vertices"][0]["id"].as_str().unwrap().to_owned();

    let (status, ct, body) = api.raw("GET", "/openapi.json", None, Vec::new());
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc: Value = serde_json::from_slice(&body).unwrap();

    let seed: u64 = std::env::var("WEIR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fuzzing with WEIR_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let valid = |name: &str| -> String {
        match name {
            "jobid" => job.clone(),
            "jarid" => jar.clone(),
            "triggerid" => trigger.clone(),
            "vertexid" => vertex.clone(),
            "checkpointid" => "1".into(),
            "taskmanagerid" => "local".into(),
            other => panic!("unknown parameter {other}"),
        }
    };
    // Operations that end things go last.
    let mut ops: Vec<(String, String, Value)> = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            ops.push((path.clone(), method.clone(), op.clone()));
        }
    }
    let rank = |m: &str| match m {
        "get" => 0,
        "post" => 1,
        _ => 2,
    };
    ops.sort_by_key(|(p, m, _)| (rank(m), p.contains("/stop"), p.clone()));

    let mut problems = Vec::new();
    let mut requests = 0;
    for (path, method, op) in &ops {
        let rounds = if path == "/jars/upload" { 8 } else { 60 };
        for _ in 0..rounds {
            let mut concrete = path.clone();
            let mut query = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let value = if p["in"] == "path" && rng.random_bool(0.6) {
                    valid(name)
                } else if p["in"] == "query" && rng.random_bool(0.5) {
                    value_for(&doc, &p["schema"], &mut rng, 0)
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| hostile(&mut rng))
                } else {
                    hostile(&mut rng)
                };
                if p["in"] == "path" {
                    // (A client resolves `.` and `..` segments before sending.)
                    let value = if value.trim_matches('.').is_empty() && !value.is_empty() {
                        format!("{value}x")
                    } else {
                        value
                    };
                    concrete = concrete.replace(&format!("{{{name}}}"), &encode(&value));
                } else if rng.random_bool(0.7) {
                    query.push(format!("{name}={}", encode(&value)));
                }
            }
            if rng.random_bool(0.1) {
                query.push(format!(
                    "{}={}",
                    encode(&hostile(&mut rng)),
                    encode(&hostile(&mut rng))
                ));
            }
            let target = if query.is_empty() {
                concrete.clone()
            } else {
                format!("{concrete}?{}", query.join("&"))
            };
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let (content_type, body): (Option<&str>, Vec<u8>) = match rng.random_range(0..6) {
                0 => (None, Vec::new()),
                1 => (Some("application/json"), b"{}".to_vec()),
                2 => (
                    Some("application/json"),
                    (0..rng.random_range(1..300)).map(|_| rng.random()).collect(),
                ),
                3 => (Some("application/json"), "[".repeat(5000).into_bytes()),
                4 => (Some("multipart/form-data; boundary=x"), b"--x\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"a.wasm\"\r\n\r\n\0asm--x--".to_vec()),
                _ => (
                    Some("application/json"),
                    serde_json::to_vec(&value_for(&doc, schema, &mut rng, 0)).unwrap(),
                ),
            };
            let (status, ct, body) = api.raw(method, &target, content_type, body);
            requests += 1;
            let what = format!("{} {target}", method.to_uppercase());
            if status >= 500 {
                problems.push(format!(
                    "{what}: {status} {}",
                    String::from_utf8_lossy(&body)
                ));
                continue;
            }
            let Some(documented) = op["responses"].get(status.to_string()) else {
                problems.push(format!(
                    "{what}: status {status} is not documented: {}",
                    String::from_utf8_lossy(&body)
                ));
                continue;
            };
            let Some(content) = documented["content"].as_object() else {
                continue;
            };
            let Some((_, media)) = content.iter().find(|(t, _)| ct.starts_with(t.as_str())) else {
                problems.push(format!(
                    "{what}: {status} answered {ct}, documented {:?}",
                    content.keys().collect::<Vec<_>>()
                ));
                continue;
            };
            if ct.starts_with("application/json") {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        let mut out = Vec::new();
                        violations(&doc, &media["schema"], &v, "body", &mut out);
                        problems.extend(out.into_iter().map(|p| format!("{what}: {status} {p}")));
                    }
                    Err(e) => problems.push(format!("{what}: {status} is not JSON: {e}")),
                }
            }
        }
    }
    // Nothing went anywhere but the session's own folders (a relative
    // target directory would land in its working directory, this one).
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if ![
            "ha",
            "checkpoints",
            "savepoints",
            "work",
            "compiled",
            "jars",
        ]
        .contains(&name.as_str())
        {
            problems.push(format!(
                "the session wrote {name} into its working directory"
            ));
        }
    }
    eprintln!("{requests} requests, {} problems", problems.len());
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "answers that contradict /openapi.json (WEIR_FUZZ_SEED={seed}):\n{}",
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The session is still there.
    assert_eq!(api.get("/overview").0, 200);
}
