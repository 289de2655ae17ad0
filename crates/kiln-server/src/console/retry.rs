//! The build page's "Retry failed" button: a new build that reruns only what failed
//! (`Store::retry_failed`), then its page.

use super::{require_user, see_other, PageResult};
use crate::auth::Page;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;

pub async fn retry_failed(State(st): State<AppState>, page: Page, Path(id): Path<i64>, Form(f): Form<super::build::ActionForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(f.csrf())?;
    let nb = crate::app::builds::retry_failed(&st, &page.viewer, id).await?;
    Ok(see_other(&format!("/builds/{}", nb.id)))
}
