//! Project members and their roles (`viewer`, `developer`, `maintainer`). What a role allows is
//! decided by the server's `app::access`; this module only keeps who has which role where.

use crate::{now_ms, Result, Store, StoreError};
use kiln_wire::api::Role;
use sqlx::Row;

fn role_of(text: &str) -> Result<Role> {
    Role::parse(text).ok_or_else(|| StoreError::Corrupt(format!("project member role {text:?}")))
}

impl Store {
    /// Give `user` `role` on the project (replacing any role they had).
    pub async fn grant(&self, project_id: i64, user: &str, role: Role) -> Result<()> {
        let _w = self.write_turn().await;
        sqlx::query(
            "INSERT INTO project_members (project_id, user_name, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, user_name) DO UPDATE SET role = excluded.role",
        )
        .bind(project_id)
        .bind(user)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Take `user`'s role on the project away; false when they had none.
    pub async fn revoke(&self, project_id: i64, user: &str) -> Result<bool> {
        let _w = self.write_turn().await;
        let n = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_name = $2")
            .bind(project_id)
            .bind(user)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// The project's members with their roles, by name.
    pub async fn members(&self, project_id: i64) -> Result<Vec<(String, Role)>> {
        let rows = sqlx::query("SELECT user_name, role FROM project_members WHERE project_id = $1 ORDER BY user_name")
            .bind(project_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("user_name")?, role_of(&r.try_get::<String, _>("role")?)?))).collect()
    }

    /// `user`'s role on the project, if they are a member.
    pub async fn role(&self, project_id: i64, user: &str) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM project_members WHERE project_id = $1 AND user_name = $2")
            .bind(project_id)
            .bind(user)
            .fetch_optional(self.pool())
            .await?;
        role.as_deref().map(role_of).transpose()
    }

    /// Every role `user` has, by project id (one query for a page that lists many projects).
    pub async fn roles_of(&self, user: &str) -> Result<Vec<(i64, Role)>> {
        let rows = sqlx::query("SELECT project_id, role FROM project_members WHERE user_name = $1")
            .bind(user)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("project_id")?, role_of(&r.try_get::<String, _>("role")?)?))).collect()
    }
}
