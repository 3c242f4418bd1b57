//! The stack's own ceiling, for bench/run: actix-web in front of reqwest with none of the
//! gateway's work (no caller token, no Partner Center token, no store, logs, metrics, spans,
//! retries or JSON), each request passed on as it came and the answer passed back. What the
//! gateway costs above this is its own work; what this costs above nginx is the stack's.
//!
//! `cargo run --release --example passthrough -- 127.0.0.1:8081 http://127.0.0.1:8082`
//! listens on the first address and passes every request to the second (plain HTTP).

use std::cell::OnceCell;

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

thread_local! {
    /// One client per actix worker, as the gateway has, so connections stay on their thread.
    static CLIENT: OnceCell<reqwest::Client> = const { OnceCell::new() };
}

fn client() -> reqwest::Client {
    CLIENT.with(|cell| {
        cell.get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a plain HTTP client builds")
        })
        .clone()
    })
}

async fn pass_on(
    request: HttpRequest,
    body: web::Bytes,
    upstream: web::Data<String>,
) -> HttpResponse {
    let Ok(method) = reqwest::Method::from_bytes(request.method().as_str().as_bytes()) else {
        return HttpResponse::MethodNotAllowed().finish();
    };
    let url = format!("{}{}", upstream.get_ref(), request.uri());
    let mut outgoing = client().request(method, url);
    if let Some(content_type) = request.headers().get(CONTENT_TYPE) {
        outgoing = outgoing.header(reqwest::header::CONTENT_TYPE, content_type.as_bytes());
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let Ok(bytes) = answer.bytes().await else {
        return HttpResponse::BadGateway().finish();
    };
    let mut response = HttpResponse::build(status);
    if let Some(content_type) = content_type {
        response.insert_header((CONTENT_TYPE, content_type.as_bytes()));
    }
    response.body(bytes)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: passthrough LISTEN_ADDRESS UPSTREAM_URL");
        std::process::exit(2);
    };
    let upstream = web::Data::new(upstream.trim_end_matches('/').to_owned());
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(upstream.clone())
                .default_service(web::to(pass_on))
        })
        .bind(listen)?
        .run()
        .await
    })
}
