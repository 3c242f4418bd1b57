//! The stack's own ceiling, for bench/run: actix-web in front of reqwest with none of the
//! gateway's work (no caller token, no Partner Center token, no store, logs, metrics, spans,
//! retries or JSON), each request passed on as it came and the answer passed back. What the
//! gateway costs above this is its own work; what this costs above nginx is the stack's.
//!
//! `cargo run --release --example passthrough -- 127.0.0.1:8081 http://127.0.0.1:8082`
//! listens on the first address and passes every request to the second (plain HTTP).

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use partner_gateway::partner_center::PerThreadClient;

/// Where requests go, and the client for it: one per actix worker, as the gateway has.
struct Upstream {
    base_url: String,
    clients: PerThreadClient,
}

async fn pass_on(
    request: HttpRequest,
    body: web::Bytes,
    upstream: web::Data<Upstream>,
) -> HttpResponse {
    let Ok(method) = reqwest::Method::from_bytes(request.method().as_str().as_bytes()) else {
        return HttpResponse::MethodNotAllowed().finish();
    };
    let url = format!("{}{}", upstream.base_url, request.uri());
    let mut outgoing = upstream.clients.get().request(method, url);
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
    let build = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
    };
    let upstream = web::Data::new(Upstream {
        base_url: upstream.trim_end_matches('/').to_owned(),
        clients: PerThreadClient::new(build().expect("a plain HTTP client builds"), build),
    });
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
