//! Webhook deliveries: each forge delivery id, and each signed body, is stored once per project (a redelivery or a
//! replay under another id is a duplicate). The latest [`KEPT_DELIVERIES`] authenticated ones of a project are
//! kept, and apart from them the latest [`KEPT_REFUSED`] refused ones, so that refusals — which anyone can cause —
//! never push out what the forge sent.

use crate::driver::{DriverError, Statement};
use crate::pull_requests::Observation;
use crate::records::DeliveryRecord;
use crate::rows::{int, optional_int, optional_text, text};
use crate::store::{Result, Store};

/// How many authenticated deliveries of a project are kept.
pub const KEPT_DELIVERIES: i64 = 500;

/// How many refused deliveries of a project are kept.
pub const KEPT_REFUSED: i64 = 50;

impl Store {
    /// Stores a delivery, and with it what it says of a pull request; false when one with its id (or its body) was
    /// stored before (nothing is changed then).
    pub async fn record_delivery(
        &self,
        delivery: &DeliveryRecord,
        observation: Option<&Observation>,
    ) -> Result<bool> {
        let mut batch = vec![
                Statement::new(
                    "INSERT INTO webhook_deliveries (project, delivery, forge, event, action, pull_request, head, verdict, detail, event_json, body_digest, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT DO NOTHING",
                    vec![
                        delivery.project.as_str().into(),
                        delivery.delivery.as_str().into(),
                        delivery.forge.as_str().into(),
                        delivery.event.as_str().into(),
                        delivery.action.clone().into(),
                        delivery.pull_request.into(),
                        delivery.head.clone().into(),
                        delivery.verdict.as_str().into(),
                        delivery.detail.as_str().into(),
                        delivery.event_json.clone().into(),
                        delivery.body_digest.clone().into(),
                        delivery.received_at.into(),
                    ],
                )
                .must_change(),
                // The oldest beyond what is kept, refused ones and the others each on their own.
                Statement::new(
                    "DELETE FROM webhook_deliveries WHERE project = $1 AND verdict <> 'refused' AND received_at <= (
                         SELECT received_at FROM webhook_deliveries WHERE project = $1 AND verdict <> 'refused'
                         ORDER BY received_at DESC LIMIT 1 OFFSET $2)",
                    vec![delivery.project.as_str().into(), KEPT_DELIVERIES.into()],
                ),
                Statement::new(
                    "DELETE FROM webhook_deliveries WHERE project = $1 AND verdict = 'refused' AND received_at <= (
                         SELECT received_at FROM webhook_deliveries WHERE project = $1 AND verdict = 'refused'
                         ORDER BY received_at DESC LIMIT 1 OFFSET $2)",
                    vec![delivery.project.as_str().into(), KEPT_REFUSED.into()],
                ),
        ];
        if let Some(seen) = observation {
            batch.push(Store::observe_statement(
                &delivery.project,
                seen,
                delivery.received_at,
            ));
        }
        let inserted = self.driver.transaction(batch).await;
        match inserted {
            Ok(()) => Ok(true),
            Err(DriverError::Unchanged(0)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// The project's latest deliveries, newest first.
    pub async fn deliveries(&self, project: &str, limit: i64) -> Result<Vec<DeliveryRecord>> {
        let rows = self
            .driver
            .query(
                "SELECT project, delivery, forge, event, action, pull_request, head, verdict, detail, event_json, body_digest, received_at
                 FROM webhook_deliveries WHERE project = $1 ORDER BY received_at DESC, delivery DESC LIMIT $2",
                vec![project.into(), limit.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DeliveryRecord {
                    project: text(row, 0)?,
                    delivery: text(row, 1)?,
                    forge: text(row, 2)?,
                    event: text(row, 3)?,
                    action: optional_text(row, 4)?,
                    pull_request: optional_int(row, 5)?,
                    head: optional_text(row, 6)?,
                    verdict: text(row, 7)?,
                    detail: text(row, 8)?,
                    event_json: optional_text(row, 9)?,
                    body_digest: optional_text(row, 10)?,
                    received_at: int(row, 11)?,
                })
            })
            .collect()
    }
}
