//! `loadtest http` against an HTTP server whose answers are known, over real sockets: it
//! allows each API key its first five requests and answers 429 after, 503 to a broken
//! client. Over HTTP/1.1 and HTTP/2, the harness counts every answer by status, and its
//! accuracy report compares what each key was allowed with the stated quota.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadtest::cli::{Cli, Command};
use tokio::net::TcpListener;

/// Allowed requests per API key.
const PER_KEY: usize = 5;

/// Serves on 127.0.0.1:0 until the test ends: the first [`PER_KEY`] requests of each
/// `x-api-key` get 200, the others 429; `x-broken` gets 503.
async fn serve(http2: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let status = if request.headers().contains_key("x-broken") {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        let key = request
                            .headers()
                            .get("x-api-key")
                            .map_or(String::new(), |v| {
                                v.to_str().unwrap_or_default().to_string()
                            });
                        let mut seen = seen.lock().expect("seen");
                        let count = seen.entry(key).or_default();
                        *count += 1;
                        if *count <= PER_KEY {
                            StatusCode::OK
                        } else {
                            StatusCode::TOO_MANY_REQUESTS
                        }
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            let io = TokioIo::new(stream);
            tokio::spawn(async move {
                if http2 {
                    let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(io, service).await;
                } else {
                    let builder = hyper::server::conn::http1::Builder::new();
                    let _ = builder.serve_connection(io, service).await;
                }
            });
        }
    });
    addr
}

fn args(extra: &[&str]) -> Box<loadtest::http::HttpArgs> {
    let mut argv = vec!["loadtest", "http", "--duration", "500ms", "--warmup", "0s"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Http(args) => args,
        other => panic!("not http: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_counted_by_status_and_each_key_against_the_stated_quota() {
    for http2 in [false, true] {
        let addr = serve(http2).await;
        let target = format!("http://{addr}/");
        let mut flags = vec![
            "--target",
            &target,
            "--header",
            "x-api-key: k{key}",
            "--values",
            "3",
            "--concurrency",
            "4",
            "--quota",
            "5/hour",
        ];
        if http2 {
            flags.extend(["--http2", "--connections", "2"]);
        }
        let measured = loadtest::http::measure(&args(&flags), false)
            .await
            .expect("runs");
        let run = &measured.run;
        assert_eq!(run.count("2xx"), 3 * PER_KEY as u64, "http2 {http2}");
        assert_eq!(run.count("429"), run.answers - 3 * PER_KEY as u64);
        let accuracy = run.accuracy.as_ref().expect("a stated quota");
        assert_eq!(
            (accuracy.keys, accuracy.bounded, accuracy.exceeded),
            (3, 3, 0)
        );
        assert_eq!(accuracy.allowed, 3 * PER_KEY as u64);
        assert!(
            accuracy
                .worst
                .iter()
                .all(|k| k.key.starts_with("x-api-key=k"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_statuses_are_neither_allowed_nor_limited_and_an_absent_target_is_refused() {
    let addr = serve(false).await;
    let target = format!("http://{addr}/");
    let flags = [
        "--target",
        &target,
        "--header",
        "x-broken: 1",
        "--concurrency",
        "2",
    ];
    let measured = loadtest::http::measure(&args(&flags), false)
        .await
        .expect("runs");
    assert_eq!(measured.run.count("other status"), measured.run.answers);
    assert_eq!(measured.run.count("2xx"), 0);

    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gone = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);
    let error = loadtest::http::measure(&args(&["--target", &gone]), false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error}");
    let error = loadtest::http::measure(&args(&["--target", &target, "--domain", "x"]), false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("--header"), "{error}");
}
