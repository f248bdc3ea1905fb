//! One pass over every tenant: the live lanes first, up to `limits.concurrency` tenants at
//! a time, then the late sweeps that are due, longest-due first, until the next pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::collect::client::Tenant;
use crate::collect::{CollectError, Collector, PassSummary};
use crate::sync::lock;

impl Collector {
    /// One pass, live first: every tenant's live lane until it is caught up (up to
    /// `limits.concurrency` tenants at a time), then the late sweeps that are due,
    /// longest-due first, until `sweep_deadline` (`None`: every due sweep to its end).
    /// A failing tenant is recorded and skipped; the others go on.
    pub async fn pass(
        self: &Arc<Self>,
        tenants: &[Tenant],
        sweep_deadline: Option<Instant>,
    ) -> PassSummary {
        let mut summary = PassSummary::default();
        let live = self
            .each_tenant(tenants.to_vec(), |me, tenant| async move {
                me.live(&tenant).await
            })
            .await;
        let mut healthy = Vec::new();
        for (tenant, result) in live {
            match result {
                Ok(s) => {
                    summary.add(&s);
                    healthy.push(tenant);
                }
                Err(e) => self.tenant_failed(&mut summary, &tenant, &e),
            }
        }
        // Then every tenant's SIEM streams, whatever its Data Lake lane did: their
        // failures are their own (`streams_failed`), not the tenant's.
        if !self.siem.is_empty() {
            let streams = self
                .each_tenant(tenants.to_vec(), |me, tenant| async move {
                    Ok(me.streams(&tenant).await)
                })
                .await;
            for (_, result) in streams {
                if let Ok(s) = result {
                    summary.add(&s);
                }
            }
        }
        if self.config.file.query.late_horizon_secs > 0 {
            // Longest-due first, so that a tight budget cannot starve the same tenants.
            let due = |t: &Tenant| {
                lock(&self.state)
                    .tenant(&t.id)
                    .ok()
                    .flatten()
                    .and_then(|t| t.sweep.due_ms)
                    .unwrap_or(i64::MAX)
            };
            healthy.sort_by_cached_key(due);
            let sweeps = self
                .each_tenant(healthy, move |me, tenant| async move {
                    me.sweep(&tenant, sweep_deadline).await
                })
                .await;
            for (tenant, result) in sweeps {
                match result {
                    Ok(s) => summary.add(&s),
                    Err(e) => self.tenant_failed(&mut summary, &tenant, &e),
                }
            }
        }
        summary.tenants_ok = tenants.len() - summary.tenants_failed;
        summary
    }

    /// Runs `work` for every tenant, `limits.concurrency` at a time, in the given order.
    async fn each_tenant<F, Fut>(
        self: &Arc<Self>,
        tenants: Vec<Tenant>,
        work: F,
    ) -> Vec<(Tenant, Result<PassSummary, CollectError>)>
    where
        F: Fn(Arc<Self>, Tenant) -> Fut,
        Fut: std::future::Future<Output = Result<PassSummary, CollectError>> + Send + 'static,
    {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.config.file.limits.concurrency.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let mut ids = HashMap::new();
        for tenant in tenants {
            // Taken in order, so that the first tenants start first.
            let permit = Arc::clone(&permits).acquire_owned().await;
            let job = work(Arc::clone(self), tenant.clone());
            let handle = tasks.spawn(async move {
                let _permit = permit;
                job.await
            });
            ids.insert(handle.id(), tenant);
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((id, result)) => {
                    if let Some(tenant) = ids.remove(&id) {
                        results.push((tenant, result));
                    }
                }
                Err(e) => {
                    // A task that panicked counts as a failed tenant, retried next pass.
                    if let Some(tenant) = ids.remove(&e.id()) {
                        let message = format!("the tenant's task failed: {e}");
                        results.push((tenant, Err(CollectError::State(message))));
                    }
                }
            }
        }
        results
    }

    pub(super) fn tenant_failed(
        &self,
        summary: &mut PassSummary,
        tenant: &Tenant,
        e: &CollectError,
    ) {
        summary.tenants_failed += 1;
        self.metrics.failure(&tenant.id);
        tracing::error!(tenant = %tenant.id, name = %tenant.name, error = %e, "tenant failed; it will be retried");
        let _ = lock(&self.state).record_error(&tenant.id, &e.to_string());
    }
}
