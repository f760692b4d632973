//! The storefront of the example `shop` project: a page listing the catalog's products (fetched over HTTP from
//! the catalog app), the number of orders (read from PostgreSQL) and the cart (kept in Redis).
//!
//! Serves `GET /`, `GET /api/summary`, `POST /api/cart/{product}` (one more of it in the cart) and `GET /healthz`
//! on `PORT`. Configuration comes only from the environment: `PORT`, `CATALOG_URL`, `SHOP_MODE`, `DATABASE_URL`
//! (without it, no orders are counted), `REDIS_URL` (without it, there is no cart), `PREVIEW_ENVIRONMENT` and
//! `PREVIEW_COMMIT` (shown in the summary); `SESSION_KEY` is required but never shown.

mod cart;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls};

struct Shop {
    db: Option<Client>,
    cart: Option<cart::Cart>,
    catalog_url: String,
    mode: String,
}

#[derive(Deserialize, Serialize)]
struct Product {
    id: i64,
    name: String,
    price_cents: i64,
}

#[derive(Serialize)]
struct Summary {
    mode: String,
    environment: String,
    commit: String,
    /// The catalog's own `/about`: which environment's catalog answered.
    catalog: serde_json::Value,
    products: Vec<Product>,
    orders: Option<i64>,
    /// How many items the cart holds; none without `REDIS_URL`.
    cart: Option<i64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("shop-storefront: {error}");
        std::process::exit(1);
    }
}

fn required(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn run() -> Result<(), String> {
    let port: u16 = required("PORT")?
        .parse()
        .map_err(|_| "PORT is not a port number".to_owned())?;
    // The session key only has to be present; the storefront never prints it.
    if required("SESSION_KEY")?.is_empty() {
        return Err("SESSION_KEY is empty".to_owned());
    }
    let db = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let (db, connection) = tokio_postgres::connect(&url, NoTls)
                .await
                .map_err(|e| format!("cannot connect to the database: {e}"))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    eprintln!("shop-storefront: database connection lost: {error}");
                    std::process::exit(1);
                }
            });
            Some(db)
        }
        Err(_) => None,
    };
    let cart = match std::env::var("REDIS_URL") {
        Ok(url) => Some(cart::Cart::from_url(&url)?),
        Err(_) => None,
    };
    let shop = Shop {
        db,
        cart,
        catalog_url: required("CATALOG_URL")?.trim_end_matches('/').to_owned(),
        mode: std::env::var("SHOP_MODE").unwrap_or_else(|_| "development".to_owned()),
    };
    let app = axum::Router::new()
        .route("/", get(page))
        .route("/api/summary", get(summary_json))
        .route("/api/cart/{product}", post(add_to_cart))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Arc::new(shop));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    println!("shop-storefront: listening on 127.0.0.1:{port}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// SIGTERM ends the server after the requests under way are answered.
async fn shutdown_signal() {
    if let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        terminate.recv().await;
    } else {
        std::future::pending::<()>().await;
    }
}

async fn summary(shop: &Shop) -> Result<Summary, String> {
    let products = serde_json::from_slice(&fetch(&shop.catalog_url, "/products").await?)
        .map_err(|e| format!("catalog sent invalid JSON: {e}"))?;
    let catalog = serde_json::from_slice(&fetch(&shop.catalog_url, "/about").await?)
        .map_err(|e| format!("catalog sent invalid JSON: {e}"))?;
    let orders = match &shop.db {
        Some(db) => Some(
            db.query_one("SELECT count(*) FROM orders", &[])
                .await
                .map_err(|e| format!("cannot count orders: {e}"))?
                .get(0),
        ),
        None => None,
    };
    // The page works without its cart: a cache that does not answer is only a missing count.
    let cart = match &shop.cart {
        Some(cart) => match cart.items().await {
            Ok(items) => Some(items),
            Err(error) => {
                eprintln!("shop-storefront: {error}");
                None
            }
        },
        None => None,
    };
    let variable = |name: &str| std::env::var(name).unwrap_or_default();
    Ok(Summary {
        cart,
        mode: shop.mode.clone(),
        environment: variable("PREVIEW_ENVIRONMENT"),
        commit: variable("PREVIEW_COMMIT"),
        catalog,
        products,
        orders,
    })
}

async fn summary_json(
    State(shop): State<Arc<Shop>>,
) -> Result<Json<Summary>, (StatusCode, String)> {
    summary(&shop)
        .await
        .map(Json)
        .map_err(|e| (StatusCode::BAD_GATEWAY, e))
}

/// One more of `product` in the cart; answers how many items it holds now.
async fn add_to_cart(
    State(shop): State<Arc<Shop>>,
    Path(product): Path<i64>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let Some(cart) = &shop.cart else {
        return Err((
            StatusCode::NOT_FOUND,
            "no cart: REDIS_URL is not set".to_owned(),
        ));
    };
    cart.add(product)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e))?;
    let items = cart
        .items()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e))?;
    Ok(Json(serde_json::json!({ "cart": items })))
}

async fn page(State(shop): State<Arc<Shop>>) -> Result<Html<String>, (StatusCode, String)> {
    let summary = summary(&shop)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e))?;
    let items: String = summary
        .products
        .iter()
        .map(|p| {
            format!(
                "<li>{} — {}.{:02}</li>",
                escape(&p.name),
                p.price_cents / 100,
                p.price_cents % 100
            )
        })
        .collect();
    let orders = summary
        .orders
        .map_or("no database".to_owned(), |n| format!("{n} orders"));
    let cart = summary
        .cart
        .map_or("no cart".to_owned(), |n| format!("{n} items in the cart"));
    Ok(Html(format!(
        "<!doctype html><title>shop ({mode})</title><h1>shop — {mode}</h1><p>environment {environment}</p><ul>{items}</ul><p>{orders}</p><p>{cart}</p>",
        mode = escape(&summary.mode),
        environment = escape(&summary.environment),
    )))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// GET `{catalog}{path}` with a plain HTTP/1.1 connection: the catalog's address comes from the environment
/// `preview` resolved, e.g. `http://127.0.0.1:20001`.
async fn fetch(catalog_url: &str, path: &str) -> Result<Bytes, String> {
    let authority = catalog_url
        .strip_prefix("http://")
        .ok_or_else(|| format!("CATALOG_URL must start with http://, got {catalog_url}"))?;
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("cannot reach the catalog at {authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("catalog handshake failed: {e}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("catalog request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("catalog answered {}", response.status()));
    }
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("catalog response failed: {e}"))?
        .to_bytes())
}
