//! Webhook deliveries: each forge delivery id is stored once per project (a redelivery or a replay is a
//! duplicate), and the latest [`KEPT_DELIVERIES`] of a project are kept, refused ones included, for `preview webhooks
//! list`.

use crate::driver::{DriverError, Statement};
use crate::records::DeliveryRecord;
use crate::rows::{int, optional_int, optional_text, text};
use crate::store::{Result, Store};

/// How many deliveries of a project are kept.
pub const KEPT_DELIVERIES: i64 = 500;

impl Store {
    /// Stores a delivery; false when one with its id was stored before (nothing is changed then).
    pub async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<bool> {
        let inserted = self
            .driver
            .transaction(vec![
                Statement::new(
                    "INSERT INTO webhook_deliveries (project, delivery, forge, event, action, pull_request, head, verdict, detail, event_json, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (project, delivery) DO NOTHING",
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
                        delivery.received_at.into(),
                    ],
                )
                .must_change(),
                // The oldest beyond what is kept.
                Statement::new(
                    "DELETE FROM webhook_deliveries WHERE project = $1 AND received_at < (
                         SELECT received_at FROM webhook_deliveries WHERE project = $1
                         ORDER BY received_at DESC LIMIT 1 OFFSET $2)",
                    vec![delivery.project.as_str().into(), KEPT_DELIVERIES.into()],
                ),
            ])
            .await;
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
                "SELECT project, delivery, forge, event, action, pull_request, head, verdict, detail, event_json, received_at
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
                    received_at: int(row, 10)?,
                })
            })
            .collect()
    }
}
