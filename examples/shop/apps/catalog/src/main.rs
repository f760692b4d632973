//! The catalog of the example `shop` project: lists products stored in PostgreSQL as JSON.
//!
//! `shop-catalog migrate` creates the schema and exits; `shop-catalog` serves `GET /products`, `GET /about` and
//! `GET /healthz` on `PORT`. Configuration comes only from the environment: `PORT`, `DATABASE_URL` (without it,
//! a fixed sample catalog is served, as in the demo where the local runtime runs no database yet),
//! `PREVIEW_ENVIRONMENT` and `PREVIEW_COMMIT` (shown by `/about`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (
    id          bigserial PRIMARY KEY,
    name        text   NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE IF NOT EXISTS customers (
    id        bigserial PRIMARY KEY,
    email     text NOT NULL UNIQUE,
    full_name text NOT NULL,
    phone     text
);
CREATE TABLE IF NOT EXISTS orders (
    id             bigserial PRIMARY KEY,
    customer_email text   NOT NULL REFERENCES customers (email),
    product_id     bigint NOT NULL REFERENCES products (id),
    created_at     timestamptz NOT NULL DEFAULT now()
);
";

type Db = Arc<Option<Client>>;

#[derive(Serialize)]
struct Product {
    id: i64,
    name: String,
    price_cents: i64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("shop-catalog: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let client = match std::env::var("DATABASE_URL") {
        Ok(url) => Some(connect(&url).await?),
        Err(_) => None,
    };
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        let client = client.ok_or_else(|| "migrate needs DATABASE_URL".to_owned())?;
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| format!("migration failed: {e}"))?;
        println!("shop-catalog: schema is up to date");
        return Ok(());
    }
    let port: u16 = std::env::var("PORT")
        .map_err(|_| "PORT is not set".to_owned())?
        .parse()
        .map_err(|_| "PORT is not a port number".to_owned())?;
    let app = axum::Router::new()
        .route("/products", get(list_products))
        .route("/about", get(about))
        .route("/healthz", get(health))
        .with_state(Arc::new(client));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    println!("shop-catalog: listening on 127.0.0.1:{port}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("shop-catalog: database connection lost: {error}");
            std::process::exit(1);
        }
    });
    Ok(client)
}

/// Which environment and commit this instance belongs to: how a caller sees whose catalog answered.
async fn about() -> Json<serde_json::Value> {
    let variable = |name: &str| std::env::var(name).unwrap_or_default();
    Json(serde_json::json!({
        "service": "catalog",
        "environment": variable("PREVIEW_ENVIRONMENT"),
        "commit": variable("PREVIEW_COMMIT"),
    }))
}

/// Served when there is no database.
fn sample_products() -> Vec<Product> {
    [
        ("Espresso cup", 1200),
        ("Teapot", 3450),
        ("Coffee beans, 1 kg", 2290),
    ]
    .into_iter()
    .zip(1..)
    .map(|((name, price_cents), id)| Product {
        id,
        name: name.to_owned(),
        price_cents,
    })
    .collect()
}

async fn list_products(State(db): State<Db>) -> Result<Json<Vec<Product>>, StatusCode> {
    let Some(db) = db.as_ref() else {
        return Ok(Json(sample_products()));
    };
    let rows = db
        .query(
            "SELECT id, name, price_cents FROM products ORDER BY id",
            &[],
        )
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(
        rows.iter()
            .map(|row| Product {
                id: row.get(0),
                name: row.get(1),
                price_cents: row.get(2),
            })
            .collect(),
    ))
}

async fn health(State(db): State<Db>) -> StatusCode {
    let Some(db) = db.as_ref() else {
        return StatusCode::OK;
    };
    match db.simple_query("SELECT 1").await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
