//! Token exchange trust: the issuers a company trusts and the rules that map
//! their tokens to users. Read on every exchange (exchanges are rare next to
//! token requests, and a deleted rule must stop working at once).

use super::{Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrustedIssuerRow {
    pub id: String,
    pub tenant_id: String,
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExchangeRuleRow {
    pub id: String,
    pub issuer_id: String,
    pub tenant_id: String,
    pub description: String,
    pub conditions: String,
    pub user_id: String,
    pub scopes: String,
    pub created_at: i64,
}

/// A rule that may apply to a token of some issuer, with what deciding it
/// needs: where the issuer's keys are, the audience, the user as they are.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExchangeCandidate {
    pub issuer_id: String,
    pub tenant_id: String,
    pub jwks_url: String,
    pub audience: String,
    pub rule_id: String,
    pub conditions: String,
    pub scopes: String,
    pub user_id: String,
    pub user_role: String,
    pub user_permissions: String,
    pub user_status: String,
    pub rule_created_at: i64,
}

/// Outcome of [`Store::insert_trusted_issuer_within_limit`].
#[derive(Debug, PartialEq, Eq)]
pub enum IssuerInsert {
    Inserted,
    LimitReached { trusted: i64 },
}

/// A rule and its user, for re-checking a token it granted.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleAuthRow {
    pub rule_id: String,
    pub tenant_id: String,
    pub scopes: String,
    pub user_id: String,
    pub user_role: String,
    pub user_permissions: String,
    pub user_status: String,
}

impl Store {
    /// Inserts `row` unless its company already trusts `max` issuers. The
    /// company's row is locked first, so concurrent additions count one
    /// after the other.
    pub async fn insert_trusted_issuer_within_limit(
        &self,
        row: &TrustedIssuerRow,
        max: u32,
    ) -> Result<IssuerInsert> {
        let _span = self.span("insert_trusted_issuer_within_limit");
        let mut tx = self.db()?.begin().await?;
        sqlx::query("UPDATE tenants SET updated_at = updated_at WHERE id = $1")
            .bind(&row.tenant_id)
            .execute(&mut *tx)
            .await?;
        let (trusted,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM trusted_issuers WHERE tenant_id = $1")
                .bind(&row.tenant_id)
                .fetch_one(&mut *tx)
                .await?;
        if trusted >= i64::from(max) {
            tx.rollback().await?;
            return Ok(IssuerInsert::LimitReached { trusted });
        }
        sqlx::query(
            "INSERT INTO trusted_issuers \
             (id, tenant_id, issuer, jwks_url, audience, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.tenant_id)
        .bind(&row.issuer)
        .bind(&row.jwks_url)
        .bind(&row.audience)
        .bind(&row.description)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(IssuerInsert::Inserted)
    }

    /// The company that trusts `issuer` for `audience`, if one does (at
    /// most one can: `trusted_issuers_audience_unique`).
    pub async fn trusted_audience_owner(
        &self,
        issuer: &str,
        audience: &str,
    ) -> Result<Option<String>> {
        let _span = self.span("trusted_audience_owner");
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT tenant_id FROM trusted_issuers WHERE issuer = $1 AND audience = $2",
        )
        .bind(issuer)
        .bind(audience)
        .fetch_optional(self.db()?)
        .await?;
        Ok(found.map(|(tenant_id,)| tenant_id))
    }

    pub async fn list_trusted_issuers(&self, tenant_id: &str) -> Result<Vec<TrustedIssuerRow>> {
        let _span = self.span("list_trusted_issuers");
        let sql = "SELECT id, tenant_id, issuer, jwks_url, audience, description, created_at FROM trusted_issuers WHERE tenant_id = $1 \
             ORDER BY created_at, id";
        Ok(sqlx::query_as::<_, TrustedIssuerRow>(sql)
            .bind(tenant_id)
            .fetch_all(self.db()?)
            .await?)
    }

    pub async fn find_trusted_issuer(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<TrustedIssuerRow>> {
        let _span = self.span("find_trusted_issuer");
        let sql = "SELECT id, tenant_id, issuer, jwks_url, audience, description, created_at FROM trusted_issuers WHERE tenant_id = $1 AND id = $2";
        Ok(sqlx::query_as::<_, TrustedIssuerRow>(sql)
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.db()?)
            .await?)
    }

    /// Deletes the issuer and, by cascade, its rules.
    pub async fn delete_trusted_issuer(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let _span = self.span("delete_trusted_issuer");
        let mut tx = self.db()?.begin().await?;
        sqlx::query("DELETE FROM exchange_rules WHERE tenant_id = $1 AND issuer_id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM trusted_issuers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_exchange_rule(&self, row: &ExchangeRuleRow) -> Result<()> {
        let _span = self.span("insert_exchange_rule");
        sqlx::query(
            "INSERT INTO exchange_rules \
             (id, issuer_id, tenant_id, description, conditions, user_id, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row.id)
        .bind(&row.issuer_id)
        .bind(&row.tenant_id)
        .bind(&row.description)
        .bind(&row.conditions)
        .bind(&row.user_id)
        .bind(&row.scopes)
        .bind(row.created_at)
        .execute(self.db()?)
        .await?;
        Ok(())
    }

    pub async fn list_exchange_rules(&self, tenant_id: &str) -> Result<Vec<ExchangeRuleRow>> {
        let _span = self.span("list_exchange_rules");
        let sql = "SELECT id, issuer_id, tenant_id, description, conditions, user_id, scopes, created_at FROM exchange_rules WHERE tenant_id = $1 \
             ORDER BY created_at, id";
        Ok(sqlx::query_as::<_, ExchangeRuleRow>(sql)
            .bind(tenant_id)
            .fetch_all(self.db()?)
            .await?)
    }

    pub async fn delete_exchange_rule(
        &self,
        tenant_id: &str,
        issuer_id: &str,
        rule_id: &str,
    ) -> Result<bool> {
        let _span = self.span("delete_exchange_rule");
        let done = sqlx::query(
            "DELETE FROM exchange_rules WHERE tenant_id = $1 AND issuer_id = $2 AND id = $3",
        )
        .bind(tenant_id)
        .bind(issuer_id)
        .bind(rule_id)
        .execute(self.db()?)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The rules of the issuer trusted for `issuer` and `audience` (one
    /// company's at most: `trusted_issuers_audience_unique`), oldest first.
    pub async fn exchange_candidates(
        &self,
        issuer: &str,
        audience: &str,
    ) -> Result<Vec<ExchangeCandidate>> {
        let _span = self.span("exchange_candidates");
        Ok(sqlx::query_as::<_, ExchangeCandidate>(
            "SELECT i.id AS issuer_id, i.tenant_id, i.jwks_url, i.audience, \
                    r.id AS rule_id, r.conditions, r.scopes, r.user_id, \
                    u.role AS user_role, u.permissions AS user_permissions, \
                    u.status AS user_status, r.created_at AS rule_created_at \
             FROM trusted_issuers i \
             JOIN exchange_rules r ON r.issuer_id = i.id \
             JOIN users u ON u.id = r.user_id AND u.tenant_id = i.tenant_id \
             WHERE i.issuer = $1 AND i.audience = $2 \
             ORDER BY r.created_at, r.id \
             LIMIT 1000",
        )
        .bind(issuer)
        .bind(audience)
        .fetch_all(self.db()?)
        .await?)
    }

    pub async fn find_rule_for_auth(&self, rule_id: &str) -> Result<Option<RuleAuthRow>> {
        let _span = self.span("find_rule_for_auth");
        Ok(sqlx::query_as::<_, RuleAuthRow>(
            "SELECT r.id AS rule_id, r.tenant_id, r.scopes, r.user_id, \
                    u.role AS user_role, u.permissions AS user_permissions, \
                    u.status AS user_status \
             FROM exchange_rules r JOIN users u ON u.id = r.user_id AND u.tenant_id = r.tenant_id \
             WHERE r.id = $1",
        )
        .bind(rule_id)
        .fetch_optional(self.db()?)
        .await?)
    }
}
